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

Roofline (CPU): how far batching can go on this machine for the work this evaluation
does. Per chunk it counts the matrix products (torch's FlopCounterMode on a batch of 8
chunks, plus formulas for the two CPU kernels it does not know: mkldnn's LSTM layer and
CPU attention) and the Mamba scan's exponentials (one exp(delta_t A) per state element
and step with a state to decay, counted from the shapes at MambaBlock.ssm / step), and
measures the best matrix-product rate (torch.mm) and exponential rate (torch.exp or an
inductor-compiled exp, whichever is faster) in the same run, each the fastest of several
timings. A chunk needs at least max(flops / peak, exps / exp peak) seconds, so one-by-one
time per chunk / that minimum ("bound") is the largest speed-up a batched implementation
doing the same products and exponentials could reach here (with an exp no faster than the
fastest measured). Everything else (other elementwise work, memory traffic, Python) is left
out, so the bound is generous; "batched x min" says how far the batched path is from the
minimum time (below 1 would mean a peak was under-measured: the script warns). Work that
a different algorithm could avoid is not subtracted: see the README for what is left.
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from pxby_lib.config import EvaluateConfig
from pxby_lib.evaluate import evaluate_paper, paper_chunks
from pxby_lib.models import build_model
from pxby_lib.models.ssm import MambaBlock
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text

# the chunk layout of the pipeline's evaluation (params.yaml `evaluate`, its defaults)
LAYOUT = {k: getattr(EvaluateConfig(), k) for k in ("prompt_len", "gen_len", "chunk_stride")}

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


@contextmanager
def counting_scan_exps():
    """Counts the exponentials the Mamba scan cannot do without: one exp(delta_t A) per
    state element and step that has a state to decay (not the first position of a scan,
    whose state is zero), B (L - 1) ED N per parallel scan and B ED N per step after the
    first. Counted from the shapes at MambaBlock.ssm / step, so padding, backends and the
    parameter-only -exp(A_log) are not counted. Yields a one-element list: the count."""
    count = [0]
    ssm, step = MambaBlock.ssm, MambaBlock.step

    def ssm_counted(block, x, return_state=False):
        b, length, ed = x.shape  # (B, L, ED)
        count[0] += b * max(length - 1, 0) * ed * block.d_state
        return ssm(block, x, return_state)

    def step_counted(block, x_t, window=None, h=None):
        if h is not None:
            count[0] += x_t.shape[0] * block.d_inner * block.d_state
        return step(block, x_t, window, h)

    MambaBlock.ssm, MambaBlock.step = ssm_counted, step_counted
    try:
        yield count
    finally:
        MambaBlock.ssm, MambaBlock.step = ssm, step


def work_per_chunk(model, items, chunks) -> tuple[float, float]:
    """(matrix-product flops, scan exponentials) of the batched incremental path per
    chunk, mean over `chunks`."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as flops, \
            counting_scan_exps() as exps:
        evaluate_paper(model, items, (), chunks=chunks, batch_size=len(chunks), device="cpu",
                       **LAYOUT)
    return flops.get_total_flops() / len(chunks), exps[0] / len(chunks)


def _best_rate(work: float, run, repeats: int, trials: int = 5) -> float:
    """work / the fastest of `trials` timings of `repeats` calls: a peak is a maximum
    (the machine is shared; a mean would count other tenants' load as ours)."""
    for _ in range(3):
        run()
    best = math.inf
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
        best = min(best, time.perf_counter() - t0)
    return work * repeats / best


def matmul_peak_flops(size: int = 2048) -> float:
    """Measured float32 matrix-product rate (flop/s) of this machine with torch's threads."""
    a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
    return _best_rate(2 * size**3, lambda: torch.mm(a, b, out=out), repeats=4)


def _exp_sum(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x).sum()


def exp_peak() -> float:
    """Measured exponentials per second: the best of torch.exp (out=) and of an
    inductor-compiled exp + sum (the code the compiled scan runs; no output to write), on
    float32 tensors from L2 to memory sizes. A generous peak: the bound it gives holds for
    implementations whose exp is no faster than the fastest one measured here."""
    compiled = torch.compile(_exp_sum, dynamic=False)
    rates = []
    for size in (2**15, 2**18, 2**20, 2**22):
        x = torch.rand(size) - 1  # [-1, 0): no overflow
        out = torch.empty(size)
        rates.append(_best_rate(size, lambda x=x, out=out: torch.exp(x, out=out), repeats=50))
        compiled(x)  # compile (once per size: static shapes)
        rates.append(_best_rate(size, lambda x=x: compiled(x), repeats=50))
    return max(rates)


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
    path = Path(dataset or "artifacts/pokemon")
    if path.is_dir():
        from pxby_lib.dataset import load_dataset

        return load_dataset(path).items(), f"dataset {path}"
    if dataset:
        raise SystemExit(f"--dataset {dataset} not found")
    return synthetic_items(40), "synthetic (40 items, 25x22 + 500 chars)"


def timed(model, items, chunks, batch_size: int, incremental: bool, device: str):
    t0 = time.perf_counter()
    per_chunk, _ = evaluate_paper(model, items, (), chunks=chunks, batch_size=batch_size,
                                  device=device, incremental=incremental, **LAYOUT)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, per_chunk


def bench_model(name: str, items, chunks, batch_size: int, device: str,
                peaks: tuple[float, float] | None) -> dict:
    torch.manual_seed(0)
    model = build_model(MODELS[name]).eval().to(device)
    for incremental in (True, False):  # warm-up: allocators, MKL, compiled scan kernels
        for size in (1, batch_size):  # (the SSM scan compiles once, for large batches)
            evaluate_paper(model, items, (), chunks=chunks[:size], batch_size=size, device=device,
                           incremental=incremental, **LAYOUT)
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
    every = paper_chunks(items, range(len(items)), **LAYOUT)
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
              "no batched implementation of the same products and scan exps (with an exp no "
              "faster than the fastest measured) can beat it on this machine")
        low = table.loc[table["batched x min"] < 1, "model"]
        if len(low):
            print(f"WARNING: {', '.join(low)} ran faster than its minimum: a peak was "
                  "under-measured (busy machine?), so the bounds of this run are too low")
    print("batched vs one-by-one: identical per chunk on the CPU (checked, both paths); on a GPU "
          "the kernels differ with the batch size, so rounding may flip a few argmaxes (counted)")


if __name__ == "__main__":
    main()
