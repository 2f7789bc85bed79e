"""Completions of test sprites: generation a reader can see (issue 21, item 5).

A completion prompt is a test item's shape string and the top third of its sprite
(ceil(H / 3) rows, each with its separator); the model writes the rest of the sprite and
the caption, token by token, until it closes the caption ('\\n', the item's third part)
or reaches `max_new` tokens. Greedy (argmax) and sampled (at `complete.temperature`,
each item from its own generator) completions are both made: a greedy completion of a
sprite tends to paint the most frequent colour to the end, whatever the model.

Scores per completed item (`score_completion`):
  well_formed   the item decodes without a problem: the declared shape's H rows of W
                pixels, colours in the sprite, text in a caption that ends
  ended         it closed the caption within max_new tokens
  height_error  |generated sprite rows - H| (prompt rows included, both sides)
  shape_right   the sprite has the declared H rows of W pixels
  pixel_acc     accuracy over the true sprite's completed rows (H - ceil(H/3) rows of W):
                each pixel against the generated one at the same row and column, a
                missing one counting as wrong (where the shape is right, the plain
                accuracy of the completed rows)
  caption_bleu  character BLEU of the caption against the true one (`evaluate.text_bleu`;
                0 for no caption)

Batched generation with prompts of different lengths: every row starts from the
shortest prompt and is fed its own true tokens until its prompt is used up (forced
steps draw no noise), so each row's completion equals generating it alone.

The complete stage (`complete_dataset`) picks, per track, the row of the dataset with
the lowest held-out next-token NLL among rows with at least `claims.min_seeds` seeds (the
rule fixed in params.yaml before the runs), and completes every test item with each of
its seeds and with `count_window` (fitted on each seed's training items).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pxby_lib import runs
from pxby_lib.atomic import write_text
from pxby_lib.generate import next_ids, row_generators
from pxby_lib.models.stepper import make_stepper
from pxby_lib.sequence import WindowBuilder, decode_centres, split_parts, windows_from_centres
from pxby_lib.tokenizer import PART_END_ID

PROMPT_FRACTION = 1 / 3  # of the sprite's rows (rounded up) given as the prompt
SCORES = ("well_formed", "ended", "shape_right", "height_error", "pixel_acc", "caption_bleu")
MODES = ("greedy", "sampled")
TRACKS = {"last": "paper", "every": "every"}  # a row's objective -> its track
BASELINE = "baselines/count_window"


def prompt_length(centres: Sequence[int]) -> int:
    """Positions of an item's completion prompt: its shape part and the top ceil(H/3)
    rows of its sprite (W pixels and a separator each)."""
    decoded = decode_centres(centres)
    if decoded.shape is None:
        raise ValueError(f"item has no readable shape string: {decoded.problems}")
    height, width = decoded.shape
    shape_end = int(np.flatnonzero(np.asarray(centres) == PART_END_ID)[0])
    return shape_end + 1 + math.ceil(height * PROMPT_FRACTION) * (width + 1)


@torch.no_grad()
def complete_items(model: nn.Module, prompts: Sequence[np.ndarray], max_new: int, *,
                   temperature: float = 0.0, generators: Sequence[torch.Generator] | None = None,
                   device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Continue each prompt (centre ids of an item's start, lengths may differ) until it
    has written two more part ends (the sprite's and the caption's) or max_new tokens.

    Returns each row's generated centre ids (prompt excluded). temperature 0 is greedy;
    else `generators` (one per row) draw each row's samples, so a batched call equals
    calling row by row."""
    if temperature > 0 and (generators is None or len(generators) != len(prompts)):
        raise ValueError("sampling needs one torch.Generator per prompt (generate.row_generators)")
    device = torch.device(device)
    lengths = np.array([len(p) for p in prompts])  # (B,)
    shortest = int(lengths.min())
    start = torch.as_tensor(np.stack([windows_from_centres(p[:shortest]) for p in prompts]),
                            dtype=torch.long, device=device)  # (B, P, 3, 3), P = shortest
    builders = [WindowBuilder(context=p[:shortest]) for p in prompts]
    was_training = model.training
    model.eval()
    stepper = make_stepper(model, start, int(lengths.max()) + max_new)
    written: list[list[int]] = [[] for _ in prompts]
    n_written = np.zeros(len(prompts), dtype=np.int64)  # (B,) len(written[b])
    ends_left = np.full(len(prompts), 2)  # part ends still to write: the sprite's, the caption's
    for step in range(int(lengths.max()) - shortest + max_new):
        position = shortest + step  # the position whose token is chosen now
        forced = position < lengths  # (B,) still inside its prompt: its true token
        free = np.flatnonzero(~forced & (ends_left > 0) & (n_written < max_new))
        if not forced.any() and not len(free):
            break
        ids = np.zeros(len(prompts), dtype=np.int64)  # rows done: a 0, never recorded
        ids[forced] = [prompts[b][position] for b in np.flatnonzero(forced)]
        if len(free):  # (a step of forced rows only needs no logits)
            gens = [generators[b] for b in free] if temperature > 0 else None
            ids[free] = next_ids(stepper.logits()[free], temperature=temperature,
                                 generator=gens).numpy()
        n_written[free] += 1
        for b in free:
            written[b].append(int(ids[b]))
            ends_left[b] -= int(ids[b] == PART_END_ID)
        windows = np.stack([builder.push(int(i)) for builder, i in zip(builders, ids, strict=True)])
        stepper.append(torch.as_tensor(windows, dtype=torch.long, device=device))  # (B, 3, 3)
    model.train(was_training)
    return [np.array(w, dtype=np.int64) for w in written]


def score_completion(true_centres: np.ndarray, prompt_len: int, written: np.ndarray) -> dict[str, float]:
    """The scores of one completion (module docstring) against its true item."""
    from pxby_lib.evaluate import text_bleu

    true = decode_centres(true_centres)
    height, width = true.shape
    done = np.concatenate([true_centres[:prompt_len], written])
    made = decode_centres(done)
    parts, closed = split_parts(done)
    sprite = parts[1] if len(parts) > 1 else []
    if len(parts) == 2 and not closed and sprite and not len(sprite[-1]):
        sprite = sprite[:-1]  # a sprite cut off after a '\t' has no row started after it
    sprite_rows = len(sprite)
    top = math.ceil(height * PROMPT_FRACTION)
    made_grid = np.zeros((height, width), np.uint8)  # the generated pixels at the true places
    if made.grid is not None:
        h, w = min(height, made.grid.shape[0]), min(width, made.grid.shape[1])
        made_grid[:h, :w] = made.grid[:h, :w]
    pixel_acc = float((made_grid[top:] == true.grid[top:]).mean()) if height > top else math.nan
    caption = np.concatenate(parts[2]) if len(parts) > 2 and parts[2] else np.zeros(0, np.int64)
    true_caption = np.concatenate(split_parts(true_centres)[0][2])
    return {"well_formed": float(not made.problems),
            "ended": float(int((written == PART_END_ID).sum()) >= 2),
            "shape_right": float(made.grid is not None and made.grid.shape == (height, width)
                                 and len({len(r) for r in parts[1]}) == 1),
            "height_error": float(abs(sprite_rows - height)),
            "pixel_acc": pixel_acc,
            "caption_bleu": text_bleu(caption, true_caption) if len(caption) else 0.0}


# ----------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class Pick:
    track: str  # 'paper' | 'every' | 'baseline'
    row: str  # a models row, or BASELINE
    seeds: tuple[int, ...]
    next_nll: float | None  # what picked it (held-out next-token NLL, seed mean)


def pick_rows(root: Path, ds: str, rows, min_seeds: int) -> list[Pick]:
    """Per track, the row with the lowest held-out next-token NLL (seed mean, from its
    evaluate metrics) among the dataset's rows with at least min_seeds seeds; then
    count_window with the dataset's seeds (`seeds`)."""
    picks = []
    for objective, track in TRACKS.items():
        scored = []
        for r in rows:
            if r.objective != objective or len(r.seeds) < min_seeds:
                continue
            path = runs.metrics_path(root, ds, r.name)
            if not path.exists():
                raise FileNotFoundError(f"{path}: evaluate row {r.name} first "
                                        f"(dvc repro evaluate@{ds}-{r.name})")
            scored.append((json.loads(path.read_text())["heldout"]["next_nll"], r))
        if scored:
            nll, best = min(scored, key=lambda t: t[0])
            picks.append(Pick(track, best.name, tuple(best.seeds), float(nll)))
    return picks


def complete_job(root: str, ds: str, row: str, seed: int, test_fraction: float,
                 checkpoint: str, alpha: float, settings: dict, device: str) -> dict[str, Any]:
    """Completions of seed k's test items by one row (or count_window) and their scores."""
    from pxby_lib.baselines import fit_baseline
    from pxby_lib.checkpoint import load_model
    from pxby_lib.config import CompleteConfig
    from pxby_lib.dataset import load_dataset
    from pxby_lib.runtime import resolve_device

    root_path, cfg, t0 = Path(root), CompleteConfig(**settings), time.perf_counter()
    dataset = load_dataset(runs.dataset_dir(root_path, ds))
    train_ids, test_ids = dataset.split(seed, test_fraction)
    test_ids = test_ids[: cfg.max_items] if cfg.max_items else test_ids
    if row == BASELINE:
        model, dev = fit_baseline("count_window", dataset.items(train_ids), alpha), torch.device("cpu")
    else:
        dev = resolve_device(device)
        model, _ = load_model(runs.model_dir(root_path, ds, row, seed) / f"{checkpoint}.pt", device=dev)
    centres = [dataset.item(int(i))[:, 1, 1].astype(np.int64) for i in test_ids]
    lengths = [prompt_length(c) for c in centres]
    prompts = [c[:n] for c, n in zip(centres, lengths, strict=True)]
    max_new = int(np.diff(dataset.offsets).max())  # the longest item's length
    generators = row_generators(cfg.sample_seed + 1000 * seed, len(prompts))
    written = {"greedy": complete_items(model, prompts, max_new, device=dev),
               "sampled": complete_items(model, prompts, max_new, temperature=cfg.temperature,
                                   generators=generators, device=dev)}
    rows = [{"row": row, "seed": seed, "mode": mode, "item": int(i), "prompt_len": n,
             **score_completion(c, n, w)}
            for mode in MODES
            for i, c, n, w in zip(test_ids, centres, lengths, written[mode], strict=True)]
    out = completions_dir(root_path, ds) / row.replace("/", "-") / f"s{seed}.json"
    write_text(out, json.dumps({"row": row, "seed": seed, "temperature": cfg.temperature,
                                "items": [int(i) for i in test_ids], "prompt_len": lengths,
                                **{m: [w.tolist() for w in written[m]] for m in MODES}}) + "\n")
    return {"scores": rows, "seconds": time.perf_counter() - t0}


def completions_dir(root: Path, ds: str) -> Path:
    """eval/<ds>/completions (what the report reads: `completion_report`)."""
    return runs.eval_dir(root, ds, "completions")


def complete_dataset(root: Path, cfg) -> pd.DataFrame:
    """The complete stage: completions by the picked rows and count_window, every seed, in
    parallel workers; scores.csv (one line per completion), picks.json, summary.json (seed
    means per row and mode; not a DVC metrics file: its row-named keys would widen
    `dvc metrics show` by 36 columns) and the stage's timing record."""
    from pxby_lib.jobs import plan, run_jobs

    ds, t0 = cfg.dataset_name, time.perf_counter()
    picks = pick_rows(root, ds, cfg.rows, cfg.claims.min_seeds)
    picks.append(Pick("baseline", BASELINE, tuple(cfg.seeds), None))
    jobs = [dict(root=str(root), ds=ds, row=p.row, seed=s, test_fraction=cfg.dataset.test_fraction,
                 checkpoint="last", alpha=cfg.baselines.alpha, settings=asdict(cfg.complete),
                 device=cfg.compute.device) for p in picks for s in p.seeds]
    workers, _ = plan(cfg.compute.cores, len(jobs))
    results = run_jobs(complete_job, jobs, workers, threads=1)
    scores = pd.DataFrame([line for r in results for line in r["scores"]])
    out = completions_dir(root, ds)
    write_text(out / "scores.csv", scores.to_csv(index=False, float_format="%.6g"))
    write_text(out / "picks.json", json.dumps([p.__dict__ for p in picks], indent=1) + "\n")
    means = scores.groupby(["row", "mode", "seed"])[list(SCORES)].mean().groupby(["row", "mode"]).mean()
    means_by_row = {row: {mode: {k: round(float(v), 4) for k, v in means.loc[(row, mode)].items()}
                     for mode in MODES} for row in dict.fromkeys(scores["row"])}
    write_text(out / "summary.json", json.dumps(means_by_row, indent=2) + "\n")
    timings = {f"{j['row']} s{j['seed']}": {"seconds": r["seconds"]} for j, r in zip(jobs, results, strict=True)}
    runs.write_timing(runs.timing_path(root, ds, "complete"), runs.files_under(out),
                      {"stage_seconds": time.perf_counter() - t0, "workers": workers, "runs": timings})
    return scores

