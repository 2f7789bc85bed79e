"""Evaluation throughput: batched chunks vs one chunk at a time, on the SAME chunks.

    python benchmarks/bench_evaluate.py [--n-chunks 256] [--batch-size 256]
        [--models rnn_bi_l2,ssm_bi_l1,...] [--dataset DIR] [--threads N] [--device cpu]

For each model (untrained, seeded; the Table 1 rows named below) the paper protocol
(`evaluate_paper`: 64 prompt + 16 generated windows, metrics included) runs on the same
chunks four ways: batched or one chunk per call, each with the incremental stepper (the
default, `pxby_lib/incremental.py`) or the literal full re-run of the model at every step
(`incremental=False`). The speed-up is the batched incremental path against the FASTER
of the two one-chunk paths (at one chunk per call the full re-run is sometimes quicker:
its LSTM is one fused call). On the CPU the script fails unless the batched and one-by-one
results are identical per chunk (on a GPU it counts the chunks that differ: cuDNN and
cuBLAS pick kernels by batch size), and reports how many chunks the incremental and full re-run
paths score differently (float rounding could in principle flip an argmax; 0 expected).

Roofline (CPU): how far batching can go on this machine. One chunk needs at least its
matrix products (counted with torch's FlopCounterMode on a batch of 8 chunks, plus
formulas for the two CPU kernels it does not know: mkldnn's LSTM layer and CPU
attention) and its exponentials (the Mamba scan takes one exp per state element:
exp(delta A)), so it takes at least max(flops / peak, exps / exp peak) seconds on any
implementation, with both peaks measured in the same run (a large torch.mm; torch.exp_
on a cache-sized tensor). One-by-one time per chunk / that minimum ("bound") is the
largest speed-up ANY batched implementation doing the same products and exponentials
could reach here. Everything else (elementwise work, memory traffic, Python) is left
out, so the bound is generous; "batched x min" says how far the batched path is from
the minimum time.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from pxby_lib.evaluate import evaluate_paper, paper_chunks
from pxby_lib.models import build_model
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text

PXBY = {"embedding": "pxby", "conv": True, "d_model": 81, "d_state": 64}
MODELS = {  # Table 1 rows; rnn_bi_l2 is the paper's reference architecture
    "rnn_bi_l2": {"family": "rnn", "bidirectional": True, "depth": 2, **PXBY},
    "rnn_uni_l2": {"family": "rnn", "bidirectional": False, "depth": 2, **PXBY},
    "att_l1": {"family": "transformer", "depth": 1, **PXBY},
    "att_l2": {"family": "transformer", "depth": 2, **PXBY},
    "ssm_bi_l1": {"family": "ssm", "bidirectional": True, "depth": 1, **PXBY},
    "ssm_bi_l2": {"family": "ssm", "bidirectional": True, "depth": 2, **PXBY},
    "ssm_uni_l2": {"family": "ssm", "bidirectional": False, "depth": 2, **PXBY},
}
TARGET_SPEEDUP = 20.0


def _lstm_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, **kwargs) -> int:
    """aten.mkldnn_rnn_layer (one LSTM layer and direction on the CPU): per time step and
    row, the input and recurrent products (4H x I) and (4H x H); 2 flops per multiply-add."""
    steps_times_rows = math.prod(input_shape[:-1])
    return 2 * steps_times_rows * (math.prod(w_ih_shape) + math.prod(w_hh_shape))


def _cpu_attention_flops(q_shape, k_shape, v_shape, *args, **kwargs) -> int:
    """aten._scaled_dot_product_flash_attention_for_cpu: Q K^T and (softmax) V."""
    b, h, lq, d = q_shape
    return 2 * b * h * lq * k_shape[-2] * (d + v_shape[-1])


EXTRA_FLOP_FORMULAS = {
    torch.ops.aten.mkldnn_rnn_layer: _lstm_layer_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
}


class ExpCounter(TorchDispatchMode):
    """Counts the exponentials computed (elements of every aten.exp / exp_ result)."""

    EXP_OPS = (torch.ops.aten.exp.default, torch.ops.aten.exp_.default, torch.ops.aten.exp.out)

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self.EXP_OPS:
            self.count += out.numel()
        return out


def work_per_chunk(model, items, chunks) -> tuple[float, float]:
    """(matrix-product flops, exponentials) of the batched incremental path per chunk,
    mean over `chunks` (a batch small enough for the eager scan, whose ops are visible)."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as flops, \
            ExpCounter() as exps:
        evaluate_paper(model, items, chunks=chunks, batch_size=len(chunks), device="cpu")
    return flops.get_total_flops() / len(chunks), exps.count / len(chunks)


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matrix-product rate (flop/s) of this machine with torch's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - t0)


def exp_peak(size: int = 2**20, repeats: int = 200) -> float:
    """Measured exponentials per second (torch.exp_, in place, on a cache-sized tensor)."""
    x = torch.rand(size) * -1
    for _ in range(20):
        x.exp_().neg_()
    t0 = time.perf_counter()
    for _ in range(repeats):
        x.exp_().neg_()  # stays in [-1, 0): no overflow, no denormals
    return size * repeats / (time.perf_counter() - t0)


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


def timed(model, items, chunks, batch_size: int, incremental: bool, device: str):
    t0 = time.perf_counter()
    per_chunk, _ = evaluate_paper(model, items, chunks=chunks, batch_size=batch_size,
                                  device=device, incremental=incremental)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, per_chunk


def bench_model(name: str, items, chunks, batch_size: int, device: str,
                peaks: tuple[float, float] | None) -> dict:
    torch.manual_seed(0)
    model = build_model(MODELS[name]).eval().to(device)
    for incremental in (True, False):  # warm-up: allocators, MKL, compiled scan kernels
        for size in (1, batch_size):  # (the SSM scan compiles once, for large batches)
            evaluate_paper(model, items, chunks=chunks[:size], batch_size=size, device=device,
                           incremental=incremental)
    t_batched, batched = timed(model, items, chunks, batch_size, True, device)
    t_single, single = timed(model, items, chunks, 1, True, device)
    t_batched_full, batched_full = timed(model, items, chunks, batch_size, False, device)
    t_single_full, single_full = timed(model, items, chunks, 1, False, device)
    differ = int((batched != single).any(axis=1).sum() + (batched_full != single_full).any(axis=1).sum())
    if differ and device == "cpu":  # on a GPU the kernels (and their rounding) depend on B
        raise SystemExit(f"{name}: batched and one-by-one results differ on {differ} chunks")
    n = len(chunks)
    roofline = {}
    if peaks:  # CPU only: the counting formulas above are the CPU kernels'
        flops, exps = work_per_chunk(model, items, chunks[:8])
        minimum = max(flops / peaks[0], exps / peaks[1])  # seconds per chunk, at best
        roofline = {
            "matmul MFLOP/chunk": flops / 1e6,
            "M exp/chunk": exps / 1e6,
            "batched GFLOP/s": flops * n / t_batched / 1e9,
            "batched x min": t_batched / n / minimum,
            "bound": min(t_single, t_single_full) / n / minimum,
        }
    return {
        "model": name,
        "batched chunks/s": n / t_batched,
        "1-by-1 chunks/s": n / t_single,
        "batched full chunks/s": n / t_batched_full,
        "1-by-1 full chunks/s": n / t_single_full,
        "speed-up": min(t_single, t_single_full) / t_batched,
        "incr. vs full: chunks differing": int((batched != batched_full).any(axis=1).sum()),
        "batched vs 1-by-1: chunks differing": differ,
        **roofline,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-chunks", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {list(MODELS)}")

    items, source = load_items(args.dataset)
    every = paper_chunks([len(w) for w in items])
    pick = np.unique(np.linspace(0, len(every) - 1, min(args.n_chunks, len(every))).astype(int))
    chunks = every[pick]
    peaks = (matmul_peak_flops(), exp_peak()) if args.device == "cpu" else None
    print(f"items: {source}; chunks: {len(chunks)}; batch {args.batch_size}; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}"
          + (f"; measured peaks: float32 matmul {peaks[0] / 1e9:.0f} GFLOP/s, "
             f"exp {peaks[1] / 1e9:.1f} G/s" if peaks else ""))
    rows = []
    for name in names:
        rows.append(bench_model(name, items, chunks, args.batch_size, args.device, peaks))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.1f"), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_markdown(index=False, floatfmt=".1f"))
    met = table["speed-up"] >= TARGET_SPEEDUP
    print(f"\nspeed-up = one-by-one (faster of its two paths) time / batched incremental time; "
          f"target {TARGET_SPEEDUP:.0f}x met by {int(met.sum())} of {len(table)}: "
          f"{', '.join(table.loc[met, 'model']) or 'none'}")
    if peaks:
        print("bound = one-by-one time per chunk / max(matmul flops / peak, exps / exp peak): "
              "no batched implementation of the same work can beat it on this machine")
    print("batched vs one-by-one: identical per chunk on the CPU (checked, both paths); on a GPU "
          "the kernels differ with the batch size, so rounding may flip a few argmaxes (counted)")


if __name__ == "__main__":
    main()
