"""The paper's own dataset, `ffurfaro/PixelBytes-Pokemon` (spec section 15), from parquet.

`load_pixelbytes_parquet` reads a parquet file, a folder of them, or an fsspec URL such
as `hf://datasets/...` (with `huggingface_hub` installed), and validates every row:
`image` (PNG), `caption`, `pixelbyte` (the (L, 3, 3) windows, ids < 113).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pxby_lib.sources import PNG_MAGIC, SourceError
from pxby_lib.tokenizer import VOCAB_SIZE

HF_DATASET = "hf://datasets/ffurfaro/PixelBytes-Pokemon"
PARQUET_COLUMNS = ("image", "caption", "pixelbyte")


@dataclass(frozen=True)
class PixelBytesRecord:
    index: int  # row number over all files, in file-name order
    image_png: bytes
    caption: str
    pixelbyte: np.ndarray  # (L, 3, 3) uint8, ids < 113


def _parquet_files(source: str | Path) -> list[tuple[str, Callable[[], Any]]]:
    """(name, opener) of every parquet file of a local file, folder or fsspec URL."""
    text = str(source)
    if "://" in text:
        if text.startswith("hf://") and importlib.util.find_spec("huggingface_hub") is None:
            raise SourceError(
                f"{text}: reading from the Hugging Face hub needs the optional package "
                f"huggingface_hub: `pip install huggingface_hub`, or pass a local parquet file "
                f"or folder."
            )
        try:
            import fsspec
        except ImportError as err:
            raise SourceError(f"{text}: URLs need fsspec: `pip install fsspec`.") from err
        try:
            fs, root = fsspec.core.url_to_fs(text)
            names = [root] if fs.isfile(root) else sorted(fs.glob(root.rstrip("/") + "/**/*.parquet"))
        except Exception as err:  # network / auth / missing repo: all end here
            raise SourceError(f"{text}: cannot list parquet files ({err}).") from err
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files = [(f"{protocol}://{n}", lambda n=n: fs.open(n, "rb")) for n in names]
    else:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        elif path.is_file():
            found = [path]
        else:
            raise SourceError(f"{path}: no such parquet file or folder.")
        files = [(str(p), lambda p=p: open(p, "rb")) for p in found]
    if not files:
        raise SourceError(f"{source}: no *.parquet files found.")
    return files


def _image_png(value: Any, where: str) -> bytes:
    """PNG bytes from raw bytes or a HF image struct {bytes, path}; other formats re-encoded."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if not isinstance(value, bytes | bytearray) or not value:
        raise SourceError(f"{where}, column 'image': no image bytes (got {type(value).__name__}).")
    value = bytes(value)
    if value.startswith(PNG_MAGIC):
        return value
    try:  # a GIF/JPEG icon: keep its pixels, store them losslessly as PNG
        with Image.open(io.BytesIO(value)) as im:
            im.load()
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except Exception as err:
        raise SourceError(f"{where}, column 'image': not a readable image ({err}).") from err
    return buf.getvalue()


def _pixelbyte_rows(column: Any, where: str) -> list[np.ndarray]:
    """Nested-list pixelbyte column -> one (L, 3, 3) uint8 array per row, fully validated."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)):
        raise SourceError(f"{where}, column 'pixelbyte': type {col.type} is not a nested list.")
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)  # (N,)
    if (lengths == 0).any():  # null or empty rows: L must be >= 1
        row = int(np.flatnonzero(lengths == 0)[0])
        raise SourceError(f"{where}, row {row}, column 'pixelbyte': empty or null.")
    starts = np.concatenate([[0], np.cumsum(lengths)])  # (N + 1,)

    def level(values: Any, unit: str) -> Any:
        """Check every list of this level holds 3 items; name the first bad row."""
        if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
                or pa.types.is_fixed_size_list(values.type)):
            raise SourceError(f"{where}, column 'pixelbyte': {unit} is {values.type}, not a list.")
        sizes = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero((sizes != 3) | ~values.is_valid().to_numpy(zero_copy_only=False))
        if len(bad):
            window = bad[0] // (3 if unit == "window row" else 1)
            row = int(np.searchsorted(starts, window, side="right") - 1)
            raise SourceError(
                f"{where}, row {row}, column 'pixelbyte': shape is not (L, 3, 3) "
                f"(a {unit} has {sizes[bad[0]]} items)."
            )
        return values.flatten()

    cells = level(level(col.flatten(), "window"), "window row")  # (sum L * 9,)
    if cells.null_count or not pa.types.is_integer(cells.type):
        raise SourceError(f"{where}, column 'pixelbyte': ids must be non-null integers "
                          f"(type {cells.type}, {cells.null_count} nulls).")
    ids = cells.to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, 3, 3)  # (sum L, 3, 3)
    bad = np.flatnonzero(((ids < 0) | (ids >= VOCAB_SIZE)).any(axis=(1, 2)))
    if len(bad):
        row = int(np.searchsorted(starts, bad[0], side="right") - 1)
        raise SourceError(
            f"{where}, row {row}, column 'pixelbyte': id {int(ids[bad[0]].max())} or "
            f"{int(ids[bad[0]].min())} outside the vocabulary 0..{VOCAB_SIZE - 1}."
        )
    ids = ids.astype(np.uint8)
    return [ids[starts[r]:starts[r + 1]] for r in range(len(col))]


def load_pixelbytes_parquet(source: str | Path = HF_DATASET) -> list[PixelBytesRecord]:
    """Rows of the paper's dataset (`image`, `caption`, `pixelbyte`), validated."""
    import pyarrow.parquet as pq

    records: list[PixelBytesRecord] = []
    for name, opener in _parquet_files(source):
        try:
            with opener() as handle:
                parquet = pq.ParquetFile(handle)
                columns = parquet.schema_arrow.names
                missing = [c for c in PARQUET_COLUMNS if c not in columns]
                if missing:
                    raise SourceError(
                        f"{name}: missing column(s) {missing} (found {columns}); expected the "
                        f"schema of {HF_DATASET}."
                    )
                table = parquet.read(columns=list(PARQUET_COLUMNS))
        except SourceError:
            raise
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError on truncated files
            raise SourceError(
                f"{name}: unreadable or truncated parquet ({type(err).__name__}: {err}); "
                f"download it again."
            ) from err
        windows = _pixelbyte_rows(table.column("pixelbyte"), name)
        images = table.column("image").to_pylist()
        captions = table.column("caption").to_pylist()
        for row in range(table.num_rows):
            where = f"{name}, row {row}"
            if not isinstance(captions[row], str):
                raise SourceError(f"{where}, column 'caption': not a string ({captions[row]!r}).")
            records.append(PixelBytesRecord(len(records), _image_png(images[row], where),
                                            captions[row], windows[row]))
    return records
