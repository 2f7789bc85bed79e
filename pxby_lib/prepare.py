"""The prepare stage: a raw snapshot -> the dataset artifact `artifacts/<dataset>/`.

Sources (recognised from what the folder holds): the Pokemon snapshot (`pokedex.jsonl`
+ sprites), the Twemoji snapshot (`emoji.jsonl` + images), or parquet files of the
paper's dataset (already windows). Every image goes through the same pixel pipeline
(spec section 4, `pixels.image_to_grid`), every caption through the same tokenizer rules
(section 3), every item into its window sequence (section 5). Written atomically:
`windows.npy`, `offsets.npy`, `items.csv` (one row per item: `item` is its index), a
sprite preview and a data report (what was dropped or skipped, token shares). The files
hold no build time and no machine path: equal data and settings give equal bytes.
The split is not here: seed k of a run splits the items itself (`PxByDataset.split`).
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from pxby_lib.atomic import write_dir
from pxby_lib.captions import DEFAULT_MAX_CHARS, build_caption, emoji_caption
from pxby_lib.dataset import META_COLUMNS
from pxby_lib.pixels import composite_on_white, image_to_grid
from pxby_lib.runtime import display_path
from pxby_lib.sequence import centres, decode_centres, encode_item, part_index
from pxby_lib.tokenizer import FIRST_COLOR_ID, N_COLORS, PALETTE_RGB, decode_text, encode_text


@dataclass
class RawRecord:
    """One item before the pipeline: its image and its caption text."""

    id: int
    name: str
    image: Path | bytes
    text: str


@dataclass
class _Item:
    id: int
    name: str
    windows: np.ndarray  # (L, 3, 3)
    caption: str
    original: Callable[[], np.ndarray]  # lazily loaded RGB of the source image, for previews


def source_kind(source: Path) -> str:
    """'pokemon', 'emoji', 'folder' or 'parquet', from what `source` holds."""
    from pxby_lib.sources.emoji import EMOJI_FILE
    from pxby_lib.sources.folder import CAPTION_FILES, captions_file
    from pxby_lib.sources.pokemon import POKEDEX_FILE

    if source.suffix == ".parquet" or (source.is_dir() and any(source.glob("*.parquet"))):
        return "parquet"
    if (source / POKEDEX_FILE).is_file():
        return "pokemon"
    if (source / EMOJI_FILE).is_file():
        return "emoji"
    if source.is_dir() and captions_file(source) is not None:
        return "folder"
    raise FileNotFoundError(f"source {source}: no Pokemon snapshot ({POKEDEX_FILE}), emoji "
                            f"snapshot ({EMOJI_FILE}), folder of images with "
                            f"{' or '.join(CAPTION_FILES)}, or parquet file there; run `make "
                            "data` (built-in sources) or see pxby_lib/sources/folder.py")


def raw_records(source: Path, kind: str, max_chars: int | None) -> list[RawRecord]:
    """The records of a snapshot, captions built (not yet tokenised)."""
    if kind == "pokemon":
        from pxby_lib.sources.pokemon import load_pokedex, sprite_path

        return [RawRecord(int(r["id"]), r["name"], sprite_path(source, r["id"]),
                          build_caption(r["entries"], max_chars)) for r in load_pokedex(source)]
    if kind == "folder":
        from pxby_lib.sources.folder import load_folder

        return [RawRecord(r["index"], r["name"], r["path"], build_caption([r["caption"]], max_chars))
                for r in load_folder(source)]
    from pxby_lib.sources.emoji import image_path, load_emoji

    return [RawRecord(int(r["index"]), r["name"], image_path(source, r),
                      emoji_caption(r, max_chars)) for r in load_emoji(source)]


def _char_label(c: str) -> str:
    return f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})"


def _snapshot_items(source: Path, kind: str, max_size: int, max_chars: int | None,
                    kmeans_seed: int, limit_items: int, dropped: Counter,
                    skipped: list[dict]) -> list[_Item]:
    records = raw_records(source, kind, max_chars)
    if limit_items:
        records = records[:limit_items]
    items = []
    for rec in records:
        who = f"{kind} {rec.id:03d} {rec.name}"
        try:
            grid = image_to_grid(rec.image, max_size=max_size, seed=kmeans_seed, name=who)
            caption_ids, lost = encode_text(rec.text)
            if caption_ids.size == 0:
                raise ValueError(f"{who}: caption is empty after normalisation "
                                 f"(dropped {dict(lost)})")
        except Exception as exc:  # ImageError, ValueError, SourceError: skip and count
            reason = str(exc)  # messages name files: keep the machine's prefix out of them
            for prefix in sorted({str(source.resolve()), str(source)}, key=len, reverse=True):
                reason = reason.replace(prefix, display_path(source))
            skipped.append({"id": rec.id, "name": rec.name, "reason": reason})
            continue
        dropped.update(lost)
        items.append(_Item(rec.id, rec.name, encode_item(grid, caption_ids),
                           decode_text(caption_ids), lambda im=rec.image: _load_rgb(im)))
    return items


def _load_rgb(image: str | Path | bytes) -> np.ndarray:
    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
        return composite_on_white(np.asarray(im.convert("RGBA")))


def _parquet_items(source: Path, limit_items: int) -> list[_Item]:
    from pxby_lib.sources.parquet import load_pixelbytes_parquet

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
            scale = cell // max(tile.size) or 1  # whole pixels: every sprite pixel stays square
            size = (tile.width * scale, tile.height * scale)
            tile = tile.resize(size, Image.Resampling.NEAREST)
            x0 = (k % cols) * 2 * cell + t * cell + (cell - size[0]) // 2
            sheet.paste(tile, (x0, (k // cols) * cell + (cell - size[1]) // 2))
    return sheet


def _report_md(report: dict[str, Any]) -> str:
    t = report["tokens_per_item"]
    lines = [
        "# Dataset report", "",
        f"Source: `{report['source']}` ({report['kind']}); max_size {report['max_size']}, "
        f"max_chars {report['max_chars']}, k-means seed {report['kmeans_seed']}.", "",
        f"- items: {report['n_items']} kept, {report['n_skipped']} skipped",
        f"- tokens: {report['n_tokens']} in all; per item min {t['min']}, median {t['median']}, "
        f"mean {t['mean']:.1f}, max {t['max']}",
        f"- token shares: text {report['text_share']:.3f}, image {report['image_share']:.3f}",
        "", "## Palette usage (image tokens)", "", "| id | rgb | count |", "|---|---|---|",
    ]
    lines += [f"| {k} | #{v['rgb']} | {v['count']} |" for k, v in report["palette_usage"].items()]
    lines += ["", "## Dropped characters", ""]
    lines += [f"- {k}: {v}" for k, v in report["dropped_chars"].items()] or ["- none"]
    lines += ["", "## Skipped items", ""]
    lines += [f"- {s['id']} {s['name']}: {s['reason']}" for s in report["skipped"]] or ["- none"]
    return "\n".join(lines) + "\n"


def prepare_dataset(source: str | Path = "data/pokemon", out_dir: str | Path = "artifacts/pokemon",
                    max_size: int = 25, max_chars: int | None = DEFAULT_MAX_CHARS,
                    kmeans_seed: int = 0, limit_items: int = 0) -> dict[str, Any]:
    """Build the dataset artifact (atomically) and return its report."""
    source, out_dir = Path(source), Path(out_dir)
    dropped: Counter = Counter()
    skipped: list[dict] = []
    kind = source_kind(source)
    if kind == "parquet":
        items = _parquet_items(source, limit_items)
    else:
        items = _snapshot_items(source, kind, max_size, max_chars, kmeans_seed, limit_items,
                                dropped, skipped)
    if len(items) < 2:
        raise ValueError(f"source {source}: {len(items)} usable items (need >= 2 to split); "
                         f"skipped: {skipped[:3]}")
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
        rows.append({"item": k, "id": it.id, "name": it.name, "n_tokens": len(ids),
                     "n_text": int((part != 1).sum()), "n_image": int((part == 1).sum()),
                     "height": h, "width": w, "caption": it.caption})
    meta = pd.DataFrame(rows, columns=[*META_COLUMNS, "caption"])

    n_tok = meta["n_tokens"]
    report: dict[str, Any] = {
        "source": display_path(source), "kind": kind, "max_size": max_size,
        "max_chars": max_chars, "kmeans_seed": kmeans_seed,
        "n_items": len(items), "n_skipped": len(skipped), "skipped": skipped,
        "n_tokens": int(n_tok.sum()),
        "tokens_per_item": {"min": int(n_tok.min()), "median": float(n_tok.median()),
                            "mean": float(n_tok.mean()), "max": int(n_tok.max()),
                            "std": float(n_tok.std(ddof=0))},
        "text_share": float(meta["n_text"].sum() / n_tok.sum()),
        "image_share": float(meta["n_image"].sum() / n_tok.sum()),
        "palette_usage": {str(FIRST_COLOR_ID + c): {"rgb": bytes(PALETTE_RGB[c]).hex(),
                                                    "count": int(palette[c])}
                          for c in range(N_COLORS)},
        "dropped_chars": {_char_label(c): n for c, n in dropped.most_common()},
    }

    def fill(tmp: Path) -> None:
        np.save(tmp / "windows.npy", windows)
        np.save(tmp / "offsets.npy", offsets)
        meta.to_csv(tmp / "items.csv", index=False)
        _preview(items).save(tmp / "sprites_preview.png")
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.md").write_text(_report_md(report))

    write_dir(out_dir, fill)
    return report


def prepare_stage(root: Path, cfg) -> dict[str, Any]:
    """The prepare stage: `prepare_dataset` with the stage's dataset settings into
    artifacts/<ds>, and its timing record (timings/<ds>/prepare.json)."""
    import time

    from pxby_lib import runs
    from pxby_lib.runtime import resolve

    data, t0 = cfg.dataset, time.perf_counter()
    out = runs.dataset_dir(root, cfg.dataset_name)
    report = prepare_dataset(resolve(data.source), out, max_size=data.max_size,
                             max_chars=data.max_chars, kmeans_seed=data.kmeans_seed,
                             limit_items=data.limit_items)
    runs.write_timing(runs.timing_path(root, cfg.dataset_name, "prepare"), runs.files_under(out),
                      {"stage_seconds": time.perf_counter() - t0, "n_items": report["n_items"]})
    return report
