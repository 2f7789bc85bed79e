"""Training-step speed and memory of the three families at the reference size.

For each family at its Table 1 reference size (RNN Bi PxBy-conv depth 2, the paper's
reference row; SSM Bi depth 1 and Attention depth 1, the rows of Table 1 with three seeds;
D 81, state 64; --depth overrides) one forward + backward + AdamW step on random windows:
median time over --steps steps after warm-up, windows/s (B * L / time), samples/s
(B / time) and peak memory, at every --seq-lens. Each row runs in its own subprocess with
--threads torch threads: on CPU the peak is the growth of the process's max RSS over the
measured steps (tracemalloc does not see torch's memory); on CUDA
torch.cuda.max_memory_allocated. The SSM is measured with each scan backend (see
pxby_lib/models/scan.py): 'native' (CPU) or 'triton' (CUDA), the fused loops; 'compiled'
and 'eager', the segmented paths (before the fused loops); and 'reference' (the sequential
autograd loop) at --reference-seq-len only, because it is very slow at full length.

Subnormal floats: the one supervised position's gradient decays geometrically back through
the sequence; on some CPUs (Intel, seen here) arithmetic on the subnormal tail is ~100x
slower. Training runs with torch's default (no flushing); --flush-denormals shows the cost
(the native scan flushes inside its own calls whatever this flag says).

The last table gives each SSM row's step time over the RNN's at the same length, device
and thread count, measured in the same run (the ratio, not the seconds, is what carries
over between machines and runs).

    python benchmarks/bench_models.py                       # the full tables
    python benchmarks/bench_models.py --families rnn ssm --scans native eager --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import pandas as pd
import torch

from pxby_lib.models import ModelConfig, build_model, count_parameters

CONFIGS = {  # the reference size of each family (Table 1 rows, params.yaml `models`)
    "rnn": dict(family="rnn", bidirectional=True, embedding="pxby", conv=True, depth=2),
    "transformer": dict(family="transformer", embedding="pxby", conv=True, depth=1),
    "ssm": dict(family="ssm", bidirectional=True, embedding="pxby", conv=True, depth=1),
}
SCANS = {"cpu": ["native", "compiled", "eager"], "cuda": ["triton", "eager", "compiled"]}


def _status_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's max-RSS mark (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(job: dict) -> dict:
    """One row, in this process: build, warm up, time `steps` training steps."""
    torch.manual_seed(0)
    torch.set_num_threads(job["threads"])
    torch.set_flush_denormal(job["flush_denormals"])
    device = torch.device(job["device"])
    depth = job["depth"] or CONFIGS[job["family"]]["depth"]
    cfg = ModelConfig.from_dict({**CONFIGS[job["family"]], "d_model": job["d_model"],
                                 "d_state": job["d_state"], "depth": depth})
    model = build_model(cfg).to(device).train()
    if job["scan"]:
        model.set_scan_backend(job["scan"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randint(0, cfg.vocab_size, (job["batch"], job["seq_len"], 3, 3), device=device)
    y = torch.randint(0, cfg.vocab_size, (job["batch"],), device=device)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    rss_before = _status_mb("VmRSS") or peak_rss_mb()  # model, optimizer and inputs built
    start = time.perf_counter()
    for _ in range(job["warmup"]):  # includes torch.compile's one-off compilation
        step()
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()  # so that compiling in the warm-up does not count (where supported)
    times = [step() for _ in range(job["steps"])]
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # the max RSS over the timed steps above the RSS before the first step
        peak_mb = peak_rss_mb() - rss_before
    seconds = statistics.median(times)
    return {"seconds": seconds, "min_seconds": min(times), "warmup_s": warmup_s, "peak_mb": peak_mb,
            "params": count_parameters(model), "depth": depth}


def run_job(job: dict) -> dict:
    """Run `measure(job)` in a fresh subprocess (so that the RSS peak is this row's)."""
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {job}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def jobs_for(args: argparse.Namespace, device: str) -> list[dict]:
    base = dict(device=device, batch=args.batch, d_model=81, d_state=64, depth=args.depth,
                steps=args.steps, warmup=args.warmup, scan=None, threads=args.threads,
                flush_denormals=args.flush_denormals)
    scans = [s for s in (args.scans or SCANS[device]) if s != "reference"]
    if device == "cuda" and _has_mamba_ssm():
        scans = ["cuda", *scans]
    jobs = []
    for seq_len in args.seq_lens:
        for family in args.families:
            if family != "ssm":
                jobs.append({**base, "family": family, "seq_len": seq_len})
                continue
            for scan in scans:
                jobs.append({**base, "family": family, "scan": scan, "seq_len": seq_len})
    if "ssm" in args.families and args.reference_seq_len:  # the slow ground truth, short
        short = {**base, "family": "ssm", "seq_len": args.reference_seq_len,
                 "steps": min(args.steps, 3), "warmup": 1}
        jobs += [{**short, "scan": scan} for scan in ["reference", *scans]]
        if "rnn" in args.families:
            jobs.append({**short, "family": "rnn"})
    return jobs


def ratio_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each SSM row's step time and peak memory over the RNN row's at the same length and
    device (both measured in this run)."""
    rnn = table[table.model == "rnn"].set_index(["device", "seq_len"])
    rows = []
    for _, r in table[table.model.str.startswith("ssm")].iterrows():
        key = (r.device, r.seq_len)
        if key not in rnn.index:
            continue
        base = rnn.loc[key]
        rows.append({"model": r.model, "device": r.device, "seq_len": r.seq_len,
                     "ms/step": r["ms/step"], "RNN ms/step": base["ms/step"],
                     "SSM / RNN step": round(r["ms/step"] / base["ms/step"], 2),
                     "peak MB": r["peak MB"], "RNN peak MB": base["peak MB"]})
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    try:
        return table.to_markdown(index=False)
    except ImportError:  # tabulate not installed
        return table.to_string(index=False)


def _has_mamba_ssm() -> bool:
    try:
        import mamba_ssm  # noqa: F401
    except Exception:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--depth", type=int, default=0,
                        help="every family's depth (default 0: each family's reference row)")
    parser.add_argument("--scans", nargs="+", default=None,
                        help="SSM scan backends (default: native compiled eager on CPU, "
                             "triton eager compiled on CUDA)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads in every row (params.yaml compute.cores: 2)")
    parser.add_argument("--reference-seq-len", type=int, default=32,
                        help="length for the slow reference scan (0: skip it)")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, plus cuda when available")
    parser.add_argument("--flush-denormals", action="store_true",
                        help="torch.set_flush_denormal(True) in every row (not what training "
                             "does: shows what subnormal gradients cost)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for job in jobs_for(args, device):
            result = run_job(job)
            family = job["family"] + (f" (scan: {job['scan']})" if job["scan"] else "")
            rows.append({
                "model": family, "device": device, "depth": result["depth"],
                "batch": job["batch"], "seq_len": job["seq_len"], "params": result["params"],
                "ms/step": round(result["seconds"] * 1e3, 1),
                "min ms": round(result["min_seconds"] * 1e3, 1),  # robust to a busy machine
                "windows/s": round(job["batch"] * job["seq_len"] / result["seconds"]),
                "samples/s": round(job["batch"] / result["seconds"], 1),
                "peak MB": round(result["peak_mb"], 1),
                "warm-up s": round(result["warmup_s"], 1),
            })
            print(f"done: {family} on {device}, L={job['seq_len']}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    print(f"torch {torch.__version__}, {args.threads} threads in each row, flush denormals "
          f"{'on' if args.flush_denormals else 'off (as in training)'}, "
          f"{os.cpu_count()} CPUs; forward + backward + AdamW per batch, median of "
          f"{args.steps} steps after {args.warmup} warm-up steps (compilation included in "
          f"warm-up); peak MB: CPU = max RSS over the timed steps minus the RSS before the "
          f"first step (one subprocess per row), CUDA = max_memory_allocated. Reference-scan "
          f"rows use seq_len {args.reference_seq_len}.")
    print(_markdown(table))
    ratios = ratio_table(table)
    if len(ratios):
        print("\nSSM step / RNN step (same device, length and threads, this run):")
        print(_markdown(ratios))


if __name__ == "__main__":
    main()
