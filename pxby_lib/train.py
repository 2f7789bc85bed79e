"""Training with the paper's protocol (spec section 9): seeded, resumable, model-agnostic.

The trainer knows nothing about the model: it needs a module mapping (B, L, 3, 3) ids to
(B, V) next-token logits, and two `WindowSamples` datasets (train, test).

Protocol (as published):
  AdamW(lr 1e-3, weight decay 0.01), cross-entropy, batch 32, shuffled, no scheduler.
  Evaluation log at epoch 0 (test set only; its train columns repeat the test values)
  and every `eval_every` epochs: eval mode, the whole test set, and the first
  ceil(N_test / batch) batches of a freshly shuffled training order (a different slice
  each time), each as loss, accuracy (%) and weighted F1.
  "best" = lowest test loss among logged epochs >= 1 (strict <), "last" = final weights.
What the reference did not log and we do: the real training loss of every epoch
(`train_loss`), seconds per epoch, windows/s. The loss is averaged over samples (the
reference divided by one batch too few when the last batch was partial; not copied).
If `epochs` is not a multiple of `eval_every`, the final epoch is logged as well.

Resume: after every epoch `resume.pt` holds weights, optimizer, both RNG states and the
log so far. A run killed at any moment restarts from the last completed epoch and ends
bit-identical (CPU) to an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from .atomic import atomic_path
from .checkpoint import load_state_into, read_checkpoint, save_checkpoint

TIMING_COLUMNS = ("seconds", "windows_per_s")
HISTORY_COLUMNS = [
    "epoch", "train_eval_loss", "train_accuracy", "train_f1",
    "test_loss", "test_accuracy", "test_f1", "train_loss", "seconds", "windows_per_s",
]


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    eval_every: int = 5
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    eval_batch_size: int = 256  # batching of the evaluation passes only (no effect on values)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def progress_disabled() -> bool:
    """No bars under CI, papermill (no TTY) or when PXBY_PROGRESS=0."""
    if os.environ.get("PXBY_PROGRESS") == "1":
        return False
    return bool(os.environ.get("CI")) or os.environ.get("PXBY_PROGRESS") == "0" or not sys.stderr.isatty()


@torch.no_grad()
def evaluate_samples(model: nn.Module, samples, indices: np.ndarray, device: torch.device,
                     batch_size: int = 256) -> dict[str, float]:
    """Loss (mean over samples), accuracy (%) and weighted F1 on `samples[indices]`."""
    was_training = model.training
    model.eval()
    total_loss, preds, targets = 0.0, [], []
    for start in range(0, len(indices), batch_size):
        x, y = samples.batch(indices[start:start + batch_size])
        x, y = x.to(device), y.to(device)
        logits = model(x)  # (B, V)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(-1).cpu())
        targets.append(y.cpu())
    model.train(was_training)
    pred, true = torch.cat(preds).numpy(), torch.cat(targets).numpy()
    return {
        "loss": total_loss / len(indices),
        "accuracy": 100.0 * float((pred == true).mean()),
        "f1": float(f1_score(true, pred, average="weighted", zero_division=0)),
    }


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
    return epoch == 0 or epoch % cfg.eval_every == 0 or epoch == cfg.epochs


def train(model: nn.Module, train_samples, test_samples, cfg: TrainConfig, out_dir: str | Path,
          *, resume_dir: str | Path | None = None, progress: bool | None = None,
          stop_after_epoch: int | None = None) -> pd.DataFrame:
    """Train `model` and write to `out_dir`: last.pt, best.pt, history.csv.

    The resume state goes to `resume_dir` (default `out_dir`); under DVC it must lie
    outside the stage's outputs, which DVC deletes before re-running a stage. A resume
    state written for other settings or another architecture is ignored (fresh start).
    Weights must already be initialised (seed before `build_model` for reproducibility).
    Returns the evaluation log. `stop_after_epoch` exits early (used to test resuming).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume_root = Path(resume_dir) if resume_dir is not None else out
    resume_root.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    model.to(device)
    if cfg.epochs < 0 or cfg.batch_size < 1 or cfg.eval_every < 1:
        raise ValueError(f"bad TrainConfig {cfg}: epochs >= 0, batch_size >= 1, eval_every >= 1")
    if len(train_samples) == 0 or len(test_samples) == 0:
        raise ValueError("train and test sample sets must both be non-empty")

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    shuffle = torch.Generator().manual_seed(cfg.seed)  # shuffling and eval slices
    torch.manual_seed(cfg.seed + 1)  # dropout (Transformer); kept apart from init
    history: list[dict] = []
    best_loss, best_epoch, start_epoch = math.inf, -1, 0

    resume_path = resume_root / "resume.pt"
    state = read_checkpoint(resume_path) if resume_path.exists() else None
    if state is not None and (state["train_config"] != asdict(cfg)
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
        if device.type == "cuda" and "cuda" in state["rng"]:  # dropout draws on the GPU
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        history, best_loss, best_epoch = state["history"], state["best_test_loss"], state["best_epoch"]
        start_epoch = state["epoch"] + 1

    n_test = len(test_samples)
    test_idx = np.arange(n_test)
    slice_batches = math.ceil(n_test / cfg.batch_size)
    disable_bar = (not progress) if progress is not None else progress_disabled()

    def snapshot(epoch: int, timings: bool = False) -> dict:
        # last.pt / best.pt leave out wall-clock columns so that the same settings give
        # byte-identical files; resume.pt keeps them to rebuild history.csv.
        # Rows rebuilt with the module's own key strings: pickle writes a string once and
        # then refers to it, so rows restored from resume.pt (other string objects) would
        # otherwise change the bytes of a resumed run's checkpoints.
        keep = HISTORY_COLUMNS if timings else [c for c in HISTORY_COLUMNS if c not in TIMING_COLUMNS]
        rows = [{k: row[k] for k in keep} for row in history]
        return {
            "model_config": model.config.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "train_config": asdict(cfg),
            "epoch": epoch,
            "history": rows,
            "best_test_loss": best_loss,
            "best_epoch": best_epoch,
        }

    for epoch in range(start_epoch, cfg.epochs + 1):
        t0, train_loss, n_windows = time.perf_counter(), float("nan"), 0
        if epoch > 0:  # epoch 0 is the untrained model's evaluation
            model.train()
            order = torch.randperm(len(train_samples), generator=shuffle).numpy()
            total, count = 0.0, 0
            bar = tqdm(range(0, len(order), cfg.batch_size), disable=disable_bar, leave=False,
                       desc=f"epoch {epoch}/{cfg.epochs}", mininterval=1.0)
            for start in bar:
                x, y = train_samples.batch(order[start:start + cfg.batch_size])
                x, y = x.to(device), y.to(device)  # (B, L, 3, 3), (B,)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(y)
                count += len(y)
                n_windows += x.shape[0] * x.shape[1]
                bar.set_postfix(loss=f"{total / count:.3f}",
                                win_s=f"{n_windows / (time.perf_counter() - t0):.0f}")
            train_loss = total / count
        if should_log(epoch, cfg):
            test = evaluate_samples(model, test_samples, test_idx, device, cfg.eval_batch_size)
            if epoch == 0:
                tr = test  # as the reference's log: train columns repeat the test values
            else:
                order = torch.randperm(len(train_samples), generator=shuffle).numpy()
                tr = evaluate_samples(model, train_samples, order[: slice_batches * cfg.batch_size],
                                      device, cfg.eval_batch_size)
            seconds = time.perf_counter() - t0
            history.append({
                "epoch": epoch, "train_eval_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                "train_f1": tr["f1"], "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                "test_f1": test["f1"], "train_loss": train_loss, "seconds": seconds,
                "windows_per_s": n_windows / seconds if n_windows else float("nan"),
            })
            if epoch >= 1 and test["loss"] < best_loss:
                best_loss, best_epoch = test["loss"], epoch
                save_checkpoint(snapshot(epoch), out / "best.pt")
            _atomic_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), out / "history.csv")
        state = snapshot(epoch, timings=True)
        state["optimizer"] = optimizer.state_dict()
        state["rng"] = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(device)
        state["data_signature"] = _signature(train_samples, test_samples)
        save_checkpoint(state, resume_path)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return pd.DataFrame(history, columns=HISTORY_COLUMNS)

    save_checkpoint(snapshot(cfg.epochs), out / "last.pt")
    if not (out / "best.pt").exists():  # epochs == 0: nothing beat "no model"
        save_checkpoint(snapshot(cfg.epochs), out / "best.pt")
    resume_path.unlink(missing_ok=True)
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)
