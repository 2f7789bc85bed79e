"""Evaluation throughput: batched chunks vs one chunk at a time, on the SAME chunks.

    python benchmarks/bench_evaluate.py [--n-chunks 256] [--batch-size 256] [--dataset DIR]

Model: the paper's reference architecture (RNN, Bi, PxBy embedding with conv, D 81,
state 64, depth 2), untrained and seeded. Items: the prepared dataset if --dataset (or
artifacts/dataset) exists, else synthetic items of the real size (25 x 22 sprite, ~500
caption characters, ~1,100 tokens). Chunks: the paper's (64 prompt + 16 generated,
every 80 positions), an evenly spread subset of them. Both paths must give identical
per-chunk metrics; the script fails otherwise.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pxby_lib.evaluate import evaluate_one_by_one, evaluate_paper, paper_chunks
from pxby_lib.models import build_model
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text

REFERENCE = {"family": "rnn", "bidirectional": True, "embedding": "pxby", "conv": True,
             "d_model": 81, "d_state": 64, "depth": 2}
TARGET_SPEEDUP = 20.0


def synthetic_items(n: int, seed: int = 0) -> list[np.ndarray]:
    """Items shaped like the real ones: 25 x 22 sprites of 12 colours, ~500-char captions."""
    rng = np.random.default_rng(seed)
    words = "it lives in forests and eats berries. the seed on its back grows larger".split()
    items = []
    for _ in range(n):
        grid = rng.integers(FIRST_COLOR_ID, FIRST_COLOR_ID + 12, (25, 22))
        caption = " ".join(rng.choice(words, 100))[:500]
        items.append(encode_item(grid, encode_text(caption)[0]))
    return items


def load_items(dataset: str | None) -> tuple[list[np.ndarray], str]:
    path = Path(dataset or "artifacts/dataset")
    if path.is_dir():
        from pxby_lib.data import load_dataset

        return load_dataset(path).items, f"dataset {path}"
    if dataset:
        raise SystemExit(f"--dataset {dataset} not found")
    return synthetic_items(40), "synthetic (40 items, 25x22 + 500 chars)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-chunks", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    items, source = load_items(args.dataset)
    every = paper_chunks([len(w) for w in items])
    pick = np.unique(np.linspace(0, len(every) - 1, min(args.n_chunks, len(every))).astype(int))
    chunks = every[pick]
    torch.manual_seed(0)
    model = build_model(REFERENCE).eval()
    n_params = sum(p.numel() for p in model.parameters())

    evaluate_paper(model, items, chunks=chunks[:2], batch_size=2)  # warm-up (allocators, MKL)
    t0 = time.perf_counter()
    batched, summary = evaluate_paper(model, items, chunks=chunks, batch_size=args.batch_size)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single, _ = evaluate_one_by_one(model, items, chunks=chunks)
    t_single = time.perf_counter() - t0

    identical = batched.equals(single)
    n = len(chunks)
    print(f"items: {source}; chunks: {n}; model: RNN Bi PxBy-conv 81/64/2 ({n_params:,} params)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    print(f"{'path':<28}{'seconds':>10}{'chunks/s':>12}")
    print(f"{'batched (' + str(args.batch_size) + ' per call)':<28}{t_batched:>10.2f}{n / t_batched:>12.1f}")
    print(f"{'one chunk at a time':<28}{t_single:>10.2f}{n / t_single:>12.1f}")
    speedup = t_single / t_batched
    verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    print(f"speed-up: {speedup:.1f}x (target {TARGET_SPEEDUP:.0f}x: {verdict})")
    print(f"per-chunk results identical: {identical}; hamming mean {summary['hamming_mean']:.4f}")
    if not identical:
        diff = (batched != single).any(axis=1)
        raise SystemExit(f"batched and one-by-one results differ on {int(diff.sum())} chunks")


if __name__ == "__main__":
    main()
