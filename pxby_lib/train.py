"""Training with the paper's protocol (spec section 9), a stopping rule, seeded and resumable.

The trainer knows nothing about the model: it needs a module mapping (B, L, 3, 3) ids to
(B, V) next-token logits, and two `WindowSamples` datasets (train, test).

Protocol (as published):
  AdamW(lr 1e-3, weight decay 0.01), cross-entropy, batch 32, shuffled, no scheduler.
  Objective 'last' (the paper's): one target per sample, the token after its last window.
  Objective 'every' (this project's, causal models only): the cross-entropy at every
  position of the sample (each predicting the next centre), averaged over positions;
  the same samples, batches and optimiser. The evaluation log is the same for both (the
  last position of each test sample), so the stopping rule reads the same score.
  Evaluation log at epoch 0 (test set only; its train columns repeat the test values)
  and every `eval_every` epochs: eval mode, the whole test set, and the first
  ceil(N_test / batch) batches of a freshly shuffled training order (a different slice
  each time), each as loss, accuracy (%) and weighted F1.
  "best" = lowest test loss among logged epochs >= 1 (strict <), "last" = final weights.
Stopping rule (this project's; `train.patience`, the same for every row): stop after
`patience` logged evaluations without a new best test loss, or at `max_epochs` (the
cap), whichever comes first. patience 0 never stops early (the paper: 200 epochs).
The final epoch is always logged. The log says which ended the run (`stopped_by`).
What the reference did not log and we do: the real training loss of every epoch
(`train_loss`), the optimiser steps so far. The loss is averaged over samples (the
reference divided by one batch too few when the last batch was partial; not copied).

Resume: after every epoch `resume.pt` holds weights, optimizer, both RNG states and the
log so far. A run killed at any moment restarts from the last completed epoch and ends
bit-identical (CPU) to an uninterrupted run.

Files: last.pt, best.pt and history.csv hold no wall-clock time, so the same settings
give the same bytes; seconds go to the stage's timing record (`runs.write_timing`).
The train stage (`train_row`) trains a row's seeds in parallel workers (`train_job`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pxby_lib import runs
from pxby_lib.atomic import atomic_path
from pxby_lib.checkpoint import load_state_into, read_checkpoint, save_checkpoint
from pxby_lib.config import OBJECTIVES, ModelConfig, StageConfig, TrainConfig
from pxby_lib.onestep import evaluate_samples
from pxby_lib.runtime import progress_mode, resolve_device, say

HISTORY_COLUMNS = [
    "epoch", "steps", "train_eval_loss", "train_accuracy", "train_f1",
    "test_loss", "test_accuracy", "test_f1", "train_loss",
]


@dataclass
class TrainResult:
    history: pd.DataFrame  # the evaluation log, HISTORY_COLUMNS
    stopped_by: str | None  # 'patience' | 'cap' | None (interrupted by stop_after_epoch)
    seconds: list[float] = field(default_factory=list)  # wall time of every epoch run


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _signature(train_samples, test_samples) -> list[int]:
    """Cheap identity of the data a resume state belongs to (sizes and a checksum)."""
    sig = [len(train_samples), len(test_samples)]
    for samples in (train_samples, test_samples):
        x, y = samples.batch(np.arange(min(len(samples), 8)))
        sig += [int(x.sum()), int(y.sum())]
    return sig


def should_log(epoch: int, cfg: TrainConfig) -> bool:
    return epoch == 0 or epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs


def evaluations_since_best(history: list[dict], best_epoch: int) -> int:
    """Logged evaluations after the best one (epoch 0 never counts as a best)."""
    return sum(1 for row in history if row["epoch"] > max(best_epoch, 0))


def stop_reason(history: list[dict], best_epoch: int, cfg: TrainConfig) -> str | None:
    """'patience', 'cap' or None (go on), after the last logged evaluation in `history`."""
    epoch = history[-1]["epoch"] if history else 0
    if cfg.patience and epoch >= 1 and evaluations_since_best(history, best_epoch) >= cfg.patience:
        return "patience"
    if epoch >= cfg.max_epochs:
        return "cap"
    return None


def _loss(model: nn.Module, samples, indices: np.ndarray, objective: str, dev) -> tuple[torch.Tensor, int]:
    """The training loss of one batch and its number of samples."""
    if objective == "every":
        x, y = samples.batch(indices, every=True)
        x, y = x.to(dev), y.to(dev)  # (B, L, 3, 3), (B, L)
        logits = model.forward_all(x)  # (B, L, V)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten()), len(y)
    x, y = samples.batch(indices)
    x, y = x.to(dev), y.to(dev)  # (B, L, 3, 3), (B,)
    return F.cross_entropy(model(x), y), len(y)


def train(model: nn.Module, train_samples, test_samples, cfg: TrainConfig, out_dir: str | Path,
          *, seed: int = 0, device: str = "auto", resume_dir: str | Path | None = None,
          label: str = "", progress: bool | None = None,
          stop_after_epoch: int | None = None, objective: str = "last") -> TrainResult:
    """Train `model` with `objective` ('last' or 'every', the module docstring) and write
    to `out_dir`: last.pt, best.pt, history.csv.

    The resume state goes to `resume_dir` (default `out_dir`); under DVC it must lie
    outside the stage's outputs, which DVC deletes before re-running a stage. A resume
    state written for other settings or another architecture is ignored (fresh start).
    Weights must already be initialised (seed before `build_model` for reproducibility).
    `seed` seeds the shuffling and the dropout. Returns the log and how the run ended.
    `stop_after_epoch` exits early, as a crash would (used to test resuming).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume_root = Path(resume_dir) if resume_dir is not None else out
    resume_root.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    model.to(dev)
    if len(train_samples) == 0 or len(test_samples) == 0:
        raise ValueError("train and test sample sets must both be non-empty")

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    shuffle = torch.Generator().manual_seed(seed)  # shuffling and eval slices
    torch.manual_seed(seed + 1)  # dropout (Transformer); kept apart from init
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: one of {OBJECTIVES}")
    if objective == "every" and not model.causal:
        raise ValueError(f"objective 'every' needs a causal model; {model.config.family} "
                         f"(bidirectional={model.config.bidirectional}) sees its targets")
    settings = {"train": asdict(cfg), "seed": seed}
    if objective != "last":  # (a 'last' run's files stay those of the paper track)
        settings["objective"] = objective
    history: list[dict] = []
    best_loss, best_epoch, start_epoch, steps, seconds = math.inf, -1, 0, 0, []

    resume_path = resume_root / "resume.pt"
    state = read_checkpoint(resume_path) if resume_path.exists() else None
    if state is not None and (state["settings"] != settings
                              or state["model_config"] != model.config.to_dict()
                              or state.get("data_signature") != _signature(train_samples, test_samples)):
        print(f"note: {resume_path} was written for other settings; starting over", file=sys.stderr)
        state = None
    if state is not None:
        print(f"resuming from {resume_path} after epoch {state['epoch']}", file=sys.stderr)
        load_state_into(model, state, source=str(resume_path))
        optimizer.load_state_dict(state["optimizer"])
        shuffle.set_state(state["rng"]["shuffle"])
        torch.set_rng_state(state["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in state["rng"]:  # dropout draws on the GPU
            torch.cuda.set_rng_state(state["rng"]["cuda"], dev)
        history, best_loss, best_epoch = state["history"], state["best_test_loss"], state["best_epoch"]
        steps, seconds, start_epoch = state["steps"], state["seconds"], state["epoch"] + 1

    n_test = len(test_samples)
    test_idx = np.arange(n_test)
    slice_batches = math.ceil(n_test / cfg.batch_size)
    show_bars = progress_mode() == "bars" if progress is None else progress

    def snapshot(epoch: int, stopped_by: str | None = None) -> dict:
        # Rows rebuilt with the module's own key strings: pickle writes a string once and
        # then refers to it, so rows restored from resume.pt (other string objects) would
        # otherwise change the bytes of a resumed run's checkpoints.
        return {
            "model_config": model.config.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "settings": settings,
            "epoch": epoch,
            "steps": steps,
            "stopped_by": stopped_by,
            "history": [{k: row[k] for k in HISTORY_COLUMNS} for row in history],
            "best_test_loss": best_loss,
            "best_epoch": best_epoch,
        }

    stopped_by = stop_reason(history, best_epoch, cfg) if history else None
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        if stopped_by is not None:
            break
        t0, train_loss = time.perf_counter(), float("nan")
        if epoch > 0:  # epoch 0 is the untrained model's evaluation
            model.train()
            order = torch.randperm(len(train_samples), generator=shuffle).numpy()
            total, count = 0.0, 0
            bar = tqdm(range(0, len(order), cfg.batch_size), disable=not show_bars, leave=False,
                       desc=f"{label} epoch {epoch}/{cfg.max_epochs}", mininterval=1.0)
            for start in bar:
                loss, n = _loss(model, train_samples, order[start:start + cfg.batch_size],
                                objective, dev)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * n
                count += n
                steps += 1
                bar.set_postfix(loss=f"{total / count:.3f}")
            train_loss = total / count
        if should_log(epoch, cfg):
            test = evaluate_samples(model, test_samples, test_idx, dev)
            if epoch == 0:
                tr = test  # as the reference's log: train columns repeat the test values
            else:
                order = torch.randperm(len(train_samples), generator=shuffle).numpy()
                tr = evaluate_samples(model, train_samples, order[: slice_batches * cfg.batch_size], dev)
            history.append({
                "epoch": epoch, "steps": steps, "train_eval_loss": tr["loss"],
                "train_accuracy": tr["accuracy"], "train_f1": tr["f1"], "test_loss": test["loss"],
                "test_accuracy": test["accuracy"], "test_f1": test["f1"], "train_loss": train_loss,
            })
            if epoch >= 1 and test["loss"] < best_loss:
                best_loss, best_epoch = test["loss"], epoch
                save_checkpoint(snapshot(epoch), out / "best.pt")
            _atomic_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), out / "history.csv")
            stopped_by = stop_reason(history, best_epoch, cfg)
            say(f"{label} epoch {epoch}/{cfg.max_epochs}: test loss {test['loss']:.4f}, "
                f"accuracy {test['accuracy']:.1f} %, train loss {train_loss:.4f}, "
                f"{time.perf_counter() - t0:.0f} s" + (f" (stop: {stopped_by})" if stopped_by else ""))
        seconds.append(time.perf_counter() - t0)
        state = snapshot(epoch)
        state["optimizer"] = optimizer.state_dict()
        state["rng"] = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state()}
        if dev.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(dev)
        state["data_signature"] = _signature(train_samples, test_samples)
        state["seconds"] = seconds
        save_checkpoint(state, resume_path)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return TrainResult(pd.DataFrame(history, columns=HISTORY_COLUMNS), None, seconds)

    final = history[-1]["epoch"] if history else epoch
    save_checkpoint(snapshot(final, stopped_by), out / "last.pt")
    if not (out / "best.pt").exists():  # max_epochs == 0: nothing beat "no model"
        save_checkpoint(snapshot(final, stopped_by), out / "best.pt")
    resume_path.unlink(missing_ok=True)
    return TrainResult(pd.DataFrame(history, columns=HISTORY_COLUMNS), stopped_by, seconds)


# ----------------------------------------------------------------------------- the train stage


def train_job(root: str, ds: str, row: str, model: dict, schedule: dict, seed: int,
              test_fraction: float, device: str, objective: str = "last") -> dict[str, Any]:
    """Train one (row, seed) run; returns how it ended."""
    from pxby_lib.dataset import WindowSamples, load_dataset
    from pxby_lib.models import build_model
    from pxby_lib.runtime import numerics_record

    root_path, cfg = Path(root), TrainConfig(**schedule)
    dataset = load_dataset(runs.dataset_dir(root_path, ds))
    train_ids, test_ids = dataset.split(seed, test_fraction)
    train_samples = WindowSamples(dataset.items(train_ids), cfg.seq_len, cfg.sample_stride)
    test_samples = WindowSamples(dataset.items(test_ids), cfg.seq_len, cfg.sample_stride)
    torch.manual_seed(seed)  # weight initialisation
    net = build_model(ModelConfig(**model), context=cfg.seq_len)
    out = runs.model_dir(root_path, ds, row, seed)
    result = train(net, train_samples, test_samples, cfg, out, seed=seed, device=device,
                         resume_dir=runs.resume_dir(root_path, ds, row, seed), label=f"{row} s{seed}",
                         objective=objective)
    last = result.history.iloc[-1]
    ck = read_checkpoint(out / "last.pt")
    summary = {"seed": seed, "epochs": int(ck["epoch"]), "steps": int(ck["steps"]),
               "stopped_by": ck["stopped_by"], "best_epoch": int(ck["best_epoch"]),
               "test_loss": float(last.test_loss), "test_accuracy": float(last.test_accuracy),
               "n_train_samples": len(train_samples), "n_test_samples": len(test_samples)}
    summary["timing"] = {"seconds": float(sum(result.seconds)), "epoch_seconds": result.seconds,
                         "device": str(next(net.parameters()).device), **numerics_record(),
                         "epochs": summary["epochs"], "steps": summary["steps"]}
    return summary


def train_row(root: Path, cfg: StageConfig) -> list[dict]:
    """Train every seed of the stage's row, `jobs.plan(cores, n_seeds)` workers at a time;
    the stage's timing record (timings/<ds>/train/<row>.json) says how long each took."""
    from pxby_lib.jobs import plan, run_jobs

    row, ds, t0 = cfg.row, cfg.dataset_name, time.perf_counter()
    workers, threads = plan(cfg.compute.cores, len(row.seeds))
    schedule = asdict(cfg.train) | ({} if row.max_epochs is None else {"max_epochs": row.max_epochs})
    jobs = [dict(root=str(root), ds=ds, row=row.name, model=row.model.to_dict(),
                 schedule=schedule, seed=seed, test_fraction=cfg.dataset.test_fraction,
                 device=cfg.compute.device, objective=row.objective) for seed in row.seeds]
    summaries = run_jobs(train_job, jobs, workers, threads)
    timings = {f"s{s['seed']}": s.pop("timing") for s in summaries}
    checkpoints = [runs.model_dir(root, ds, row.name, s) / f for s in row.seeds for f in ("last.pt", "best.pt")]
    runs.write_timing(runs.timing_path(root, ds, "train", row.name), checkpoints,
                      {"stage_seconds": time.perf_counter() - t0, "workers": workers, "runs": timings})
    return summaries
