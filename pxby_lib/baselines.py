"""Zero-training baselines: what the 3x3 window gives for free (spec section 14, flaw 8).

Each baseline is a module with the models' interface, windows (B, L, 3, 3) -> logits
(B, V) for the next token, so the same generation, metric and one-step-accuracy code
scores it (`evaluate`, `onestep.evaluate_samples`). They look at the next position's
known cells: where the next token will sit in its item's 2-D layout, its window is
already known except its centre (above-left, above, above-right: the row above; left:
the current token, or 0 at a row or part start). `sequence.WindowBuilder.next_window`
reads them off the centres so far (exact when the input reaches back to the start of
the previous row, as every 64-window prompt and training sample here does).

  most_frequent  the most frequent token of the training items, everywhere
  copy           the token above the next position when there is one (non-zero),
                 else the current token
  count_pair     the most frequent next token given (above, left) of the next window,
                 backing off to (left), then to the unigram
  count_window   the same given all four known cells (above-left, above, above-right,
                 left), backing off to (above, left), (left), the unigram
  count_window_targets  a diagnostic, not a contender: count_window fitted only on the
                 windows the paper's training sees as targets (one per sample: the
                 position after each sample of `train.seq_len`, every `sample_stride`),
                 not on every training position; the gap to count_window is what one
                 target per sample leaves unused. Never the "best baseline" of C6.

The count models are smoothed n-gram-style estimates fitted on training items only:
p_k(t | ctx) = (c_k(ctx, t) + alpha p_{k-1}(t | ctx')) / (n_k(ctx) + alpha), with
p_0 = add-one unigram; they give a real test loss. `copy` is deterministic (no loss).

The baselines stage (`evaluate_baselines`) fits every baseline on each seed's training
items and scores it as the evaluate stage scores a model (`scoring.score_run`), plus the
one-step test score of the training log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pxby_lib.sequence import WindowBuilder
from pxby_lib.tokenizer import VOCAB_SIZE

# the known cells of a window (row, col), and each count model's back-off chain of them
ABOVE_LEFT, ABOVE, ABOVE_RIGHT, LEFT = (0, 0), (0, 1), (0, 2), (1, 0)
CHAINS = {
    "count_pair": ((ABOVE, LEFT), (LEFT,)),
    "count_window": ((ABOVE_LEFT, ABOVE, ABOVE_RIGHT, LEFT), (ABOVE, LEFT), (LEFT,)),
}
DIAGNOSTIC = {"count_window_targets": "count_window"}  # name -> the chain it counts with
BASELINES = ("most_frequent", "copy", *CHAINS, *DIAGNOSTIC)


def next_windows(windows: Tensor | np.ndarray) -> np.ndarray:
    """(B, L, 3, 3) windows -> (B, 3, 3): the window of each row's NEXT position, centre 0."""
    centres = np.asarray(windows.cpu() if isinstance(windows, Tensor) else windows)[..., 1, 1]
    return np.stack([WindowBuilder(row).next_window() for row in centres.astype(np.int64)])


def _keys(cells: np.ndarray, level: Sequence[tuple[int, int]]) -> np.ndarray:
    """(N, 3, 3) windows -> (N,) int64 key of the given cells (base-V digits)."""
    key = np.zeros(len(cells), dtype=np.int64)
    for r, c in level:
        key = key * VOCAB_SIZE + cells[:, r, c].astype(np.int64)
    return key


class Baseline(nn.Module):
    """A rule, not a model: no parameters, deterministic, runs on the CPU."""

    has_loss = True  # its logits are log-probabilities (a test loss means something)

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, windows: Tensor) -> Tensor:
        logits = self.next_logits(next_windows(windows), windows[:, -1, 1, 1].cpu().numpy())
        return torch.as_tensor(logits, dtype=torch.float32, device=windows.device)  # (B, V)

    def next_logits(self, nxt: np.ndarray, current: np.ndarray) -> np.ndarray:
        """(B, 3, 3) next windows, (B,) current tokens -> (B, V) logits."""
        raise NotImplementedError


class MostFrequent(Baseline):
    def __init__(self, unigram: np.ndarray):
        super().__init__("most_frequent")
        self.log_p = np.log(unigram)  # (V,)

    def next_logits(self, nxt: np.ndarray, current: np.ndarray) -> np.ndarray:
        return np.tile(self.log_p, (len(nxt), 1))  # (B, V)


class Copy(Baseline):
    has_loss = False

    def __init__(self):
        super().__init__("copy")

    def next_logits(self, nxt: np.ndarray, current: np.ndarray) -> np.ndarray:
        above = nxt[:, ABOVE[0], ABOVE[1]].astype(np.int64)  # (B,)
        pick = np.where(above != 0, above, current)
        logits = np.full((len(nxt), VOCAB_SIZE), -1e9, dtype=np.float32)
        logits[np.arange(len(nxt)), pick] = 0.0
        return logits


class CountModel(Baseline):
    """Smoothed counts of the next token given a chain of contexts (most specific first)."""

    def __init__(self, name: str, windows: np.ndarray, unigram: np.ndarray, alpha: float):
        super().__init__(name)
        self.chain = CHAINS[DIAGNOSTIC.get(name, name)]
        self.unigram, self.alpha = unigram, alpha
        target = windows[:, 1, 1].astype(np.int64)  # (N,)
        self.tables = []  # per level, most general first: (sorted keys, counts (K, V))
        for level in reversed(self.chain):
            keys = _keys(windows, level)
            uniq, inverse = np.unique(keys, return_inverse=True)
            counts = np.zeros((len(uniq), VOCAB_SIZE), dtype=np.float64)
            np.add.at(counts, (inverse, target), 1.0)
            self.tables.append((level, uniq, counts))

    def probabilities(self, nxt: np.ndarray) -> np.ndarray:
        """(B, 3, 3) next windows -> (B, V) smoothed next-token distributions."""
        p = np.broadcast_to(self.unigram, (len(nxt), VOCAB_SIZE)).copy()  # (B, V)
        for level, uniq, counts in self.tables:
            keys = _keys(nxt, level)
            at = np.clip(np.searchsorted(uniq, keys), 0, len(uniq) - 1)
            seen = uniq[at] == keys  # (B,)
            c = counts[at[seen]]  # (b, V)
            p[seen] = (c + self.alpha * p[seen]) / (c.sum(1, keepdims=True) + self.alpha)
        return p

    def next_logits(self, nxt: np.ndarray, current: np.ndarray) -> np.ndarray:
        return np.log(self.probabilities(nxt))


def unigram(windows: np.ndarray) -> np.ndarray:
    """Add-one unigram distribution (V,) of the centre tokens."""
    counts = np.bincount(windows[:, 1, 1].astype(np.int64), minlength=VOCAB_SIZE)[:VOCAB_SIZE]
    return (counts + 1.0) / (counts.sum() + VOCAB_SIZE)


def paper_targets(items: Sequence[np.ndarray], seq_len: int, sample_stride: int) -> np.ndarray:
    """(N, 3, 3): the windows the paper's training predicts, one per sample: the target
    column of `WindowSamples`' index table (the window after each sample)."""
    from pxby_lib.dataset import WindowSamples

    samples = WindowSamples(list(items), seq_len, sample_stride)
    return samples.windows[samples.index_table[:, seq_len]]


def fit_baseline(name: str, train_items: Sequence[np.ndarray], alpha: float = 1.0,
                 seq_len: int | None = None, sample_stride: int | None = None) -> Baseline:
    """The baseline `name` (one of BASELINES), fitted on the training items' windows (a
    DIAGNOSTIC one on the paper samples' targets only: `seq_len` and `sample_stride`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")
    if name in DIAGNOSTIC:
        if seq_len is None or sample_stride is None:
            raise ValueError(f"{name} counts the paper samples' targets: give seq_len and sample_stride")
        windows = paper_targets(train_items, seq_len, sample_stride)
        return CountModel(name, windows, unigram(windows), alpha)
    windows = np.concatenate(list(train_items))  # (N, 3, 3): each window's known cells and centre
    uni = unigram(windows)
    if name == "most_frequent":
        return MostFrequent(uni)
    if name == "copy":
        return Copy()
    return CountModel(name, windows, uni, alpha)


# ----------------------------------------------------------------------------- the baselines stage


def baseline_job(root: str, ds: str, name: str, seed: int, test_fraction: float, alpha: float,
                 seq_len: int, sample_stride: int, evaluate: dict) -> dict[str, Any]:
    """Fit baseline `name` on seed k's training items; one-step score on its test samples
    (the training log's samples: `seq_len`, `sample_stride`) and both protocols."""
    from pxby_lib import runs
    from pxby_lib.config import EvaluateConfig
    from pxby_lib.dataset import WindowSamples, load_dataset
    from pxby_lib.onestep import evaluate_samples
    from pxby_lib.runtime import numerics_record
    from pxby_lib.scoring import say_scores, score_run, write_summary

    root_path, t0 = Path(root), time.perf_counter()
    ev = EvaluateConfig(**evaluate)  # the chunk keys the stage declares (the rest unread)
    dataset = load_dataset(runs.dataset_dir(root_path, ds))
    train_ids, test_ids = dataset.split(seed, test_fraction)
    baseline = fit_baseline(name, dataset.items(train_ids), alpha, seq_len, sample_stride)
    test_samples = WindowSamples(dataset.items(test_ids), seq_len, sample_stride)
    one = evaluate_samples(baseline, test_samples, np.arange(len(test_samples)), torch.device("cpu"))
    row = f"baselines/{name}"
    out = runs.eval_dir(root_path, ds, row, seed)
    summary = score_run(baseline, dataset, seed, test_fraction, ev, seq_len, "cpu", out)
    summary.update(one_step={"test_loss": one["loss"] if baseline.has_loss else None,
                             "test_accuracy": one["accuracy"]})
    if name in DIAGNOSTIC:  # the report keeps it out of C6's "best baseline"
        summary["diagnostic"] = True
    write_summary(out, summary)
    say_scores(f"{row} s{seed}", summary)
    summary["timing"] = {"seconds": time.perf_counter() - t0, "device": "cpu", **numerics_record()}
    return summary


def evaluate_baselines(root: Path, cfg) -> dict[str, list[dict]]:
    """The baselines stage: fit and score every baseline for every seed of the dataset's
    runs, in parallel workers; its timing record is timings/<ds>/baselines.json."""
    from pxby_lib import runs
    from pxby_lib.jobs import plan, run_jobs
    from pxby_lib.scoring import write_metrics

    names, seeds, ds, t0 = cfg.baselines.names, cfg.seeds, cfg.dataset_name, time.perf_counter()
    jobs = [dict(root=str(root), ds=ds, name=n, seed=s, test_fraction=cfg.dataset.test_fraction,
                 alpha=cfg.baselines.alpha, seq_len=cfg.train.seq_len,
                 sample_stride=cfg.train.sample_stride, evaluate=cfg.evaluate.to_dict())
            for n in names for s in seeds]
    workers, _ = plan(cfg.compute.cores, len(jobs))
    results = run_jobs(baseline_job, jobs, workers, threads=1)
    timings = {f"{j['name']} s{j['seed']}": r.pop("timing") for j, r in zip(jobs, results, strict=True)}
    by_name = {n: [r for j, r in zip(jobs, results, strict=True) if j["name"] == n] for n in names}
    for n, summaries in by_name.items():
        write_metrics(root, ds, f"baselines/{n}", summaries)
    outputs = runs.files_under(*(runs.eval_dir(root, ds, f"baselines/{n}") for n in names))
    runs.write_timing(runs.timing_path(root, ds, "baselines"), outputs,
                      {"stage_seconds": time.perf_counter() - t0, "workers": workers, "runs": timings})
    return by_name
