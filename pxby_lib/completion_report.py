"""What the report shows of the completions (`complete`): the scores table, Figure 1 and
one gallery per picked row, read from what the complete stage wrote in
eval/<ds>/completions (no model loaded, and nothing of the complete stage's code imported:
the report would depend on the baselines and the generation code)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pxby_lib import runs
from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID, encode_text

MODES = ("greedy", "sampled")  # as complete.MODES
SCORES = ("well_formed", "ended", "shape_right", "height_error", "pixel_acc", "caption_bleu")
CAPTION_SHOWN = 160  # characters of a caption a picture shows (true or generated)
CUT = encode_text(" [...]")[0]


def completions_dir(root: Path, ds: str) -> Path:
    return runs.eval_dir(root, ds, "completions")  # as complete.completions_dir


def _picks(out: Path) -> list[dict]:
    return json.loads((out / "picks.json").read_text())


def completions_markdown(root: Path, ds: str, confidence: float, name) -> str:
    """The completion scores: per picked row and mode, each score's mean over seeds (each
    seed's mean over its test items) with a t interval over seeds; `name` words a row."""
    from pxby_lib.stats import seed_interval

    out = completions_dir(root, ds)
    scores = pd.read_csv(out / "scores.csv")
    picks = _picks(out)
    per_seed = scores.groupby(["row", "mode", "seed"])[list(SCORES)].mean()
    header = ["track", "row", "mode", "seeds", *SCORES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in picks:
        for mode in MODES:
            seeds = per_seed.loc[(p['row'], mode)]
            cells = []
            for score in SCORES:
                iv = seed_interval(seeds[score].tolist(), confidence)
                cells.append(f"{iv.mean:.3f}" if math.isnan(iv.lo) else f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]")
            lines.append(f"| {p['track']} | {name(p['row'])} | {mode} | {len(seeds)} | " + " | ".join(cells) + " |")
    n_items = scores.groupby(["row", "mode", "seed"]).size().iloc[0]
    temperature = json.loads(next((out).glob("*/s*.json")).read_text())["temperature"]
    return (f"# Completions of test sprites ({ds})\n\nPrompt: the shape string and the top "
            f"third of the sprite (rows rounded up); the model writes the rest of the sprite "
            f"and the caption, greedy or sampled at temperature {temperature:g}. Rows picked "
            "per track by the lowest held-out next-token NLL among rows with enough seeds "
            f"(`complete.picks`); {n_items} test items per seed; mean over seeds [{confidence:.0%} "
            "t interval over seeds]. pixel_acc counts a missing pixel as wrong (and a sprite's "
            "background counts like any pixel: painting it to the end scores well); "
            "height_error is in rows.\n\n" + "\n".join(lines) + "\n\n"
            + _differences(per_seed, picks, confidence, name))


def _differences(per_seed: pd.DataFrame, picks: list[dict], confidence: float, name) -> str:
    """Each picked row against count_window, sampled: the paired difference over the seeds
    both completed (the same test items), with its t interval; no verdict rule applies."""
    from pxby_lib.stats import seed_interval

    baseline = next((p for p in picks if p["track"] == "baseline"), None)
    if baseline is None:
        return ""
    header = ["track", "row - count_window (sampled)", "seeds", *SCORES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = per_seed.loc[(baseline["row"], "sampled")]
    for p in picks:
        if p is baseline:
            continue
        mine = per_seed.loc[(p["row"], "sampled")]
        common = sorted(set(mine.index) & set(base.index))
        cells = []
        for score in SCORES:
            iv = seed_interval((mine.loc[common, score] - base.loc[common, score]).tolist(), confidence)
            cells.append(f"{iv.mean:+.3f}" if math.isnan(iv.lo) else f"{iv.mean:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]")
        lines.append(f"| {p['track']} | {name(p['row'])} | {len(common)} | " + " | ".join(cells) + " |")
    return ("Sampled completions against `count_window`'s, paired by seed (the same test "
            f"items), mean difference [{confidence:.0%} t interval over seeds]; descriptive, "
            "no claim of the paper is about completions:\n\n" + "\n".join(lines) + "\n")


def _in_words(means: pd.Series) -> str:
    """A completion's mean scores in a few words, for a figure's header."""
    return (f"{means['ended']:.0%} end, {means['shape_right']:.0%} of the right shape, pixel "
            f"accuracy {means['pixel_acc']:.2f}, caption BLEU {means['caption_bleu']:.2f}")


def _cut_caption(ids: np.ndarray) -> np.ndarray:
    """An item's ids with a caption longer than CAPTION_SHOWN characters cut there (shown)."""
    ends = np.flatnonzero(ids == PART_END_ID)
    if len(ends) >= 2 and len(ids) - ends[1] > CAPTION_SHOWN:
        return np.concatenate([ids[: ends[1] + 1 + CAPTION_SHOWN], CUT])
    return ids


def _completion_pictures(root: Path, ds: str, dataset, row: str, seed: int,
                         item_ids: Sequence[int], limit: tuple[int, int],
                         scale: int = 6) -> dict[tuple[int, str], Any]:
    """Rendered completions {(item, mode): picture} of one run: a line under the prompt's
    rows, a caption longer than CAPTION_SHOWN characters cut there (the scores read the
    whole of it), and a runaway completion (an endless row, a tall sprite) shrunk to fit
    `limit` (width, height), nearest-neighbour so its pixels stay sharp."""
    from PIL import Image

    from pxby_lib.render import render_item

    run = json.loads((completions_dir(root, ds) / row.replace("/", "-") / f"s{seed}.json").read_text())
    pictures = {}
    for k, item in enumerate(run["items"]):
        if item not in item_ids:
            continue
        prompt = dataset.item(item)[: run["prompt_len"][k], 1, 1].astype(np.int64)
        prompt_rows = int((prompt == ROW_SEP_ID).sum())  # the shape part has no '\t'
        for mode in MODES:
            ids = _cut_caption(np.concatenate([prompt, np.asarray(run[mode][k], dtype=np.int64)]))
            picture = render_item(ids, scale=scale, prompt_rows=prompt_rows)
            picture.thumbnail(limit, resample=Image.Resampling.NEAREST)  # (no-op when it fits)
            pictures[(item, mode)] = picture
    return pictures


def completion_figures(root: Path, ds: str, n_gallery: int, name, figures: Path) -> dict[str, Path]:
    """Figure 1 (one test item: the truth, then each picked row's greedy and sampled
    completion and count_window's) and one gallery per picked row (its first seed's first
    `n_gallery` test items: truth, greedy, sampled), under `figures`."""
    from pxby_lib.atomic import atomic_path
    from pxby_lib.dataset import load_dataset
    from pxby_lib.figures import tile_sheet, with_header
    from pxby_lib.render import render_item

    out = completions_dir(root, ds)
    picks = _picks(out)
    dataset = load_dataset(runs.dataset_dir(root, ds))
    first = json.loads((out / picks[0]['row'].replace("/", "-") / f"s{picks[0]['seeds'][0]}.json").read_text())
    items = first["items"][:n_gallery]
    truth = {i: render_item(_cut_caption(dataset.item(i)[:, 1, 1].astype(np.int64)), scale=6)
             for i in items}
    temperature = first["temperature"]
    limit = (2 * max(t.width for t in truth.values()), 2 * max(t.height for t in truth.values()))
    written: dict[str, Path] = {}
    tiles = []  # one line per picked row: the truth, its greedy and its sampled completion
    for p in picks:
        pictures = _completion_pictures(root, ds, dataset, p['row'], p['seeds'][0], items[:1], limit)
        tiles += [(f"test item {items[0]}", truth[items[0]]),
                  *((f"{p['track']}: {mode}", pictures[(items[0], mode)]) for mode in MODES)]
    scores = pd.read_csv(out / "scores.csv").groupby(["row", "mode"])[list(SCORES)].mean()
    header = [f"Completions of a test sprite ({ds}, seed {picks[0]['seeds'][0]}'s split): the prompt is "
              "the shape and the top third of the sprite (above the line); the model wrote the rest and the caption",
              *(f"{p['track']}: {name(p['row'])}, seed {p['seeds'][0]}; over every test item and seed, "
                f"sampled: {_in_words(scores.loc[(p['row'], 'sampled')])}" for p in picks),
              f"greedy = argmax; sampled = temperature {temperature:g}"]
    figure1 = with_header(tile_sheet(tiles, columns=1 + len(MODES)), header)
    written["figure1_generation"] = figures / "figure1_generation.png"
    with atomic_path(written["figure1_generation"]) as tmp:
        figure1.save(tmp, format="PNG")
    for p in picks:
        pictures = _completion_pictures(root, ds, dataset, p['row'], p['seeds'][0], items, limit)
        tiles = [(f"item {i}: {label}", pic) for label, source in (("truth", None), *((m, m) for m in MODES))
                 for i in items for pic in [truth[i] if source is None else pictures[(i, source)]]]
        sheet = with_header(tile_sheet(tiles, columns=len(items)), [
            f"{p['track']}: {name(p['row'])}, seed {p['seeds'][0]}: {len(items)} test items; row 1 the truth, "
            f"row 2 greedy, row 3 sampled at temperature {temperature:g} (the prompt above the line; a "
            "completion over twice the truth's size is shrunk to it)"])
        key = f"completions_{p['track']}"
        written[key] = figures / f"{key}.png"
        with atomic_path(written[key]) as tmp:
            sheet.save(tmp, format="PNG")
    return written
