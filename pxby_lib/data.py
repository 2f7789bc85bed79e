"""Training samples, the item split, and the prepare step (spec sections 6 and 15).

`prepare_dataset` turns the Pokemon snapshot (`data/pokemon`: sprites + pokedex.jsonl)
or a parquet file of the paper's dataset into `artifacts/dataset/`: one concatenated
windows array, item offsets, per-item metadata, the seeded split and a data report.
`load_dataset` reads it back; `WindowSamples` cuts the paper's samples from it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pxby_lib.params import repo_root
from pxby_lib.pixels import composite_on_white, image_to_grid
from pxby_lib.sequence import centres, decode_centres, encode_item, part_index
from pxby_lib.tokenizer import FIRST_COLOR_ID, N_COLORS, PALETTE_RGB, decode_text, encode_text

# Chosen so that text is about half of all tokens on the Pokemon snapshot: measured text
# share 0.499 at 630 (0.459 at 512, 0.506 at 650); the report.json of a run says it again.
DEFAULT_MAX_CHARS = 630
DATASET_FILES = ("windows.npy", "offsets.npy", "items.csv", "split.json")
META_COLUMNS = ["index", "id", "name", "split", "n_tokens", "n_text", "n_image",
                "height", "width"]


# ----------------------------------------------------------------------------- captions


# Typographic punctuation of the pokedex texts, folded to ASCII before the tokenizer drops
# non-ASCII: dropping an em dash glues "nest\u2014this" into one word.
_ASCII_PUNCTUATION = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                                    "\u2014": " - ", "\u2013": "-"})


def build_caption(entries: Sequence[str], max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """Distinct entries in order, joined by a space, capped at max_chars on a boundary.

    Typographic quotes and dashes become ASCII first (the only change to the texts).

    The cut keeps whole sentences when the last sentence end within the cap keeps at least
    half of it, else it cuts at the last space; never mid-word (a first word longer than
    the cap is kept whole).
    """
    texts: list[str] = []
    for entry in entries:
        t = " ".join(str(entry).translate(_ASCII_PUNCTUATION).split())
        if t and t not in texts:
            texts.append(t)
    text = " ".join(texts)
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 1:
        raise ValueError(f"build_caption: max_chars must be >= 1 or None, got {max_chars}")
    head = text[: max_chars + 1]  # one char more: a space there means a clean cut
    sentence_ends = [m.end() for m in re.finditer(r"[.!?][\"')]*(?= )", head)]
    if sentence_ends and sentence_ends[-1] >= max_chars // 2:
        return text[: sentence_ends[-1]]
    cut = head.rfind(" ")
    return text[:cut].rstrip() if cut > 0 else text.split(" ")[0]


# ----------------------------------------------------------------------------- split, samples


def split_items(n_items: int, test_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of item rows, as sklearn's train_test_split(test_size=...) does it."""
    from sklearn.model_selection import train_test_split

    if n_items < 2:
        raise ValueError(f"split_items: need at least 2 items to split, got {n_items}")
    train, test = train_test_split(np.arange(n_items), test_size=test_fraction,
                                   random_state=seed)
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def check_seq_len(lengths: Sequence[int], seq_len: int, names: Sequence[str] | None = None) -> None:
    """Raise when seq_len exceeds every item (the samples would be pure repetition)."""
    if len(lengths) == 0:
        raise ValueError("no items: nothing to cut samples from")
    longest = int(np.argmax(lengths))
    if seq_len > lengths[longest]:
        who = names[longest] if names is not None else f"item {longest}"
        raise ValueError(f"seq_len {seq_len} is longer than every item: the longest, {who}, "
                         f"has {lengths[longest]} windows; lower seq_len")


class WindowSamples(torch.utils.data.Dataset):
    """The paper's samples: per item, starts = range(0, L, stride); indices
    (start + arange(seq_len + 1)) % L wrap inside the item. x = the first seq_len windows,
    y = the centre id of the window at index seq_len (one target per sample)."""

    def __init__(self, items: list[np.ndarray], seq_len: int = 256, stride: int = 32):
        if seq_len < 1 or stride < 1:
            raise ValueError(f"seq_len and stride must be >= 1, got {seq_len}, {stride}")
        lengths = [len(w) for w in items]
        check_seq_len(lengths, seq_len)
        self.seq_len, self.stride = seq_len, stride
        self.windows = np.concatenate(items).astype(np.uint8)  # (N, 3, 3)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tables, owners = [], []
        ramp = np.arange(seq_len + 1)
        for k, length in enumerate(lengths):
            starts = np.arange(0, length, stride)
            tables.append(offsets[k] + (starts[:, None] + ramp[None]) % length)  # (S, seq_len+1)
            owners.append(np.full(len(starts), k))
        self.index_table = np.concatenate(tables).astype(np.int32)  # (n_samples, seq_len+1)
        self.item_of_sample = np.concatenate(owners).astype(np.int64)  # (n_samples,)

    def __len__(self) -> int:
        return len(self.index_table)

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, seq_len, 3, 3) int64, y (B,) int64 in one gather: the training hot path."""
        rows = self.windows[self.index_table[np.asarray(indices, dtype=np.int64)]]  # (B, seq_len+1, 3, 3)
        x = torch.from_numpy(rows[:, : self.seq_len]).long()
        y = torch.from_numpy(rows[:, self.seq_len, 1, 1]).long()
        return x, y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range 0..{len(self) - 1}")
        x, y = self.batch([i % len(self)])
        return x[0], y[0]


# ----------------------------------------------------------------------------- the artifact


@dataclass
class PxByDataset:
    windows: np.ndarray  # (N, 3, 3) uint8, all items concatenated
    offsets: np.ndarray  # (n_items + 1,) int64: item i is windows[offsets[i]:offsets[i+1]]
    meta: pd.DataFrame  # one row per item, META_COLUMNS (+ caption)
    train_idx: np.ndarray
    test_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def item(self, i: int) -> np.ndarray:
        return self.windows[self.offsets[i] : self.offsets[i + 1]]  # (L, 3, 3) view

    @property
    def items(self) -> list[np.ndarray]:
        return [self.item(i) for i in range(len(self))]

    @property
    def train_items(self) -> list[np.ndarray]:
        return [self.item(i) for i in self.train_idx]

    @property
    def test_items(self) -> list[np.ndarray]:
        return [self.item(i) for i in self.test_idx]


def load_dataset(path: str | Path = "artifacts/dataset") -> PxByDataset:
    """Read and validate a prepared dataset folder."""
    path = Path(path)
    missing = [f for f in DATASET_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset {path}: missing {missing}; run `dvc repro prepare` "
                                f"(or pxby_lib.data.prepare_dataset)")
    windows = np.load(path / "windows.npy")
    offsets = np.load(path / "offsets.npy").astype(np.int64)
    meta = pd.read_csv(path / "items.csv", keep_default_na=False)
    split = json.loads((path / "split.json").read_text())
    train_idx = np.asarray(split["train_idx"], dtype=np.int64)
    test_idx = np.asarray(split["test_idx"], dtype=np.int64)
    n = len(offsets) - 1
    problems = []
    if windows.ndim != 3 or windows.shape[1:] != (3, 3) or windows.dtype != np.uint8:
        problems.append(f"windows.npy is {windows.dtype} {windows.shape}, not uint8 (N, 3, 3)")
    if n < 1 or offsets[0] != 0 or offsets[-1] != len(windows) or (np.diff(offsets) <= 0).any():
        problems.append("offsets.npy does not cut windows.npy into non-empty items")
    if len(meta) != n or list(meta.columns[: len(META_COLUMNS)]) != META_COLUMNS:
        problems.append(f"items.csv has {len(meta)} rows / columns {list(meta.columns)}, "
                        f"expected {n} rows with {META_COLUMNS}")
    both = np.concatenate([train_idx, test_idx])
    if len(np.unique(both)) != len(both) or len(both) != n or (both < 0).any() or (both >= n).any():
        problems.append("split.json train/test indices are not a partition of the items")
    if problems:
        raise ValueError(f"dataset {path} is inconsistent: {'; '.join(problems)}; "
                         f"run `dvc repro prepare` again")
    return PxByDataset(windows, offsets, meta, train_idx, test_idx)


# ----------------------------------------------------------------------------- prepare step


@dataclass
class _Item:
    id: int
    name: str
    windows: np.ndarray  # (L, 3, 3)
    caption: str
    original: Callable[[], np.ndarray]  # lazily loaded RGB of the source image, for previews


def _char_label(c: str) -> str:
    return f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})"


def _pokemon_items(source: Path, max_size: int, max_chars: int | None, seed: int,
                   limit_items: int, dropped: Counter, skipped: list[dict]) -> list[_Item]:
    from pxby_lib.sources import load_pokedex, sprite_path

    records = load_pokedex(source)
    if limit_items:
        records = records[:limit_items]
    items = []
    for rec in records:
        who = f"pokemon {rec['id']:03d} {rec['name']}"
        try:
            path = sprite_path(source, rec["id"])
            grid = image_to_grid(path, max_size=max_size, seed=seed, name=who)
            caption_ids, lost = encode_text(build_caption(rec["entries"], max_chars))
            if caption_ids.size == 0:
                raise ValueError(f"{who}: caption is empty after normalisation "
                                 f"(dropped {dict(lost)})")
        except Exception as exc:  # ImageError, ValueError, SourceError: skip and count
            reason = str(exc)  # messages name files: keep the machine's prefix out of them
            for prefix in sorted({str(source.resolve()), str(source)}, key=len, reverse=True):
                reason = reason.replace(prefix, _display_path(source))
            skipped.append({"id": int(rec["id"]), "name": rec["name"], "reason": reason})
            continue
        dropped.update(lost)
        items.append(_Item(int(rec["id"]), rec["name"], encode_item(grid, caption_ids),
                           decode_text(caption_ids),
                           lambda p=path: _load_rgb(p)))
    return items


def _load_rgb(image: str | Path | bytes) -> np.ndarray:
    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
        return composite_on_white(np.asarray(im.convert("RGBA")))


def _parquet_items(source: Path, limit_items: int) -> list[_Item]:
    from pxby_lib.sources import load_pixelbytes_parquet

    records = load_pixelbytes_parquet(source)
    if limit_items:
        records = records[:limit_items]
    return [_Item(r.index, f"row{r.index}", r.pixelbyte, r.caption,
                  lambda b=r.image_png: _load_rgb(b)) for r in records]


def _preview(items: list[_Item], n: int = 16, cell: int = 100) -> Image.Image:
    """Original (left) vs quantised (right) for n items spread over the dataset."""
    picks = np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).astype(int))
    cols = 4
    sheet = Image.new("RGB", (cols * 2 * cell, -(-len(picks) // cols) * cell), "white")
    for k, i in enumerate(picks):
        decoded = decode_centres(centres(items[i].windows))
        tiles = [Image.fromarray(items[i].original())]
        if decoded.image_rgb is not None:
            tiles.append(Image.fromarray(decoded.image_rgb))
        for t, tile in enumerate(tiles):
            scale = cell / max(tile.size)
            size = (max(1, int(tile.width * scale)), max(1, int(tile.height * scale)))
            tile = tile.resize(size, Image.Resampling.NEAREST)
            x0 = (k % cols) * 2 * cell + t * cell + (cell - size[0]) // 2
            sheet.paste(tile, (x0, (k // cols) * cell + (cell - size[1]) // 2))
    return sheet


def _display_path(path: Path) -> str:
    """`path` relative to the repository when inside it (no machine-specific prefix)."""
    resolved = Path(path).resolve()
    root = repo_root()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


def _report_md(report: dict[str, Any]) -> str:
    t = report["tokens_per_item"]
    lines = [
        "# Dataset report", "",
        f"Source: `{report['source']}`; max_size {report['max_size']}, max_chars "
        f"{report['max_chars']}, seed {report['seed']}.", "",
        f"- items: {report['n_items']} kept ({report['n_train']} train / {report['n_test']} test), "
        f"{report['n_skipped']} skipped",
        f"- tokens: {report['n_tokens']} in all; per item min {t['min']}, median {t['median']}, "
        f"mean {t['mean']:.1f}, max {t['max']}",
        f"- token shares: text {report['text_share']:.3f}, image {report['image_share']:.3f}",
        f"- samples at seq_len {report['seq_len']} / stride 32: {report['n_samples_stride32']}",
        "", "## Palette usage (image tokens)", "", "| id | rgb | count |", "|---|---|---|",
    ]
    lines += [f"| {k} | #{v['rgb']} | {v['count']} |" for k, v in report["palette_usage"].items()]
    lines += ["", "## Dropped characters", ""]
    lines += [f"- {k}: {v}" for k, v in report["dropped_chars"].items()] or ["- none"]
    lines += ["", "## Skipped items", ""]
    lines += [f"- {s['id']} {s['name']}: {s['reason']}" for s in report["skipped"]] or ["- none"]
    return "\n".join(lines) + "\n"


def _write_dir_atomically(out_dir: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) fills a temp folder beside out_dir, which then replaces out_dir."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private
        write(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare_dataset(source: str | Path = "data/pokemon", out_dir: str | Path = "artifacts/dataset",
                    max_size: int = 25, max_chars: int | None = DEFAULT_MAX_CHARS,
                    test_fraction: float = 0.1, seed: int = 0, limit_items: int = 0,
                    seq_len: int = 256) -> dict[str, Any]:
    """Build the dataset artifact (atomically) and return its report."""
    t0 = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    dropped: Counter = Counter()
    skipped: list[dict] = []
    if source.suffix == ".parquet" or (source.is_dir() and any(source.glob("*.parquet"))):
        items = _parquet_items(source, limit_items)
    elif source.is_dir():
        items = _pokemon_items(source, max_size, max_chars, seed, limit_items, dropped, skipped)
    else:
        raise FileNotFoundError(f"source {source}: no such snapshot folder or parquet file; "
                                f"run `make data`")
    check_seq_len([len(it.windows) for it in items], seq_len,
                  [f"{it.name} (id {it.id})" for it in items])
    train_idx, test_idx = split_items(len(items), test_fraction, seed)

    windows = np.concatenate([it.windows for it in items]).astype(np.uint8)  # (N, 3, 3)
    offsets = np.concatenate([[0], np.cumsum([len(it.windows) for it in items])]).astype(np.int64)
    rows, palette = [], np.zeros(N_COLORS, dtype=np.int64)
    for k, it in enumerate(items):
        ids = centres(it.windows)
        part = part_index(ids)
        decoded = decode_centres(ids)
        h, w = decoded.grid.shape if decoded.grid is not None else (0, 0)
        image_ids = ids[(part == 1) & (ids >= FIRST_COLOR_ID)].astype(np.int64)
        palette += np.bincount(image_ids - FIRST_COLOR_ID, minlength=N_COLORS)[:N_COLORS]
        rows.append({"index": k, "id": it.id, "name": it.name, "split": "train",
                     "n_tokens": len(ids), "n_text": int((part != 1).sum()),
                     "n_image": int((part == 1).sum()), "height": h, "width": w,
                     "caption": it.caption})
    meta = pd.DataFrame(rows, columns=[*META_COLUMNS, "caption"])
    meta.loc[test_idx, "split"] = "test"

    n_tok = meta["n_tokens"]
    report: dict[str, Any] = {
        "source": _display_path(source), "max_size": max_size, "max_chars": max_chars, "seed": seed,
        "test_fraction": test_fraction, "seq_len": seq_len,
        "n_items": len(items), "n_train": len(train_idx), "n_test": len(test_idx),
        "n_skipped": len(skipped), "skipped": skipped, "n_tokens": int(n_tok.sum()),
        "tokens_per_item": {"min": int(n_tok.min()), "median": float(n_tok.median()),
                            "mean": float(n_tok.mean()), "max": int(n_tok.max()),
                            "std": float(n_tok.std(ddof=0))},
        "text_share": float(meta["n_text"].sum() / n_tok.sum()),
        "image_share": float(meta["n_image"].sum() / n_tok.sum()),
        "n_samples_stride32": int(sum(-(-n // 32) for n in n_tok)),
        "palette_usage": {str(FIRST_COLOR_ID + c): {"rgb": bytes(PALETTE_RGB[c]).hex(),
                                                    "count": int(palette[c])}
                          for c in range(N_COLORS)},
        "dropped_chars": {_char_label(c): n for c, n in dropped.most_common()},
    }

    def write(tmp: Path) -> None:
        np.save(tmp / "windows.npy", windows)
        np.save(tmp / "offsets.npy", offsets)
        meta.to_csv(tmp / "items.csv", index=False)
        (tmp / "split.json").write_text(json.dumps(
            {"seed": seed, "test_fraction": test_fraction,
             "train_idx": train_idx.tolist(), "test_idx": test_idx.tolist()}))
        _preview(items).save(tmp / "sprites_preview.png")
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.md").write_text(_report_md(report))

    _write_dir_atomically(out_dir, write)
    # the files hold no wall-clock time and no machine path: the same data and settings
    # give the same bytes wherever and however fast they are built
    return {**report, "seconds": time.perf_counter() - t0}
