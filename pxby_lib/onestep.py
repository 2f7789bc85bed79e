"""The one-step (next-token) score of a set of samples: what the training log records.

`evaluate_samples` runs a model (or a baseline: the same interface, windows (B, L, 3, 3)
-> logits (B, V)) over `WindowSamples` and scores its prediction of each sample's target:
cross-entropy loss, accuracy and weighted F1. The trainer logs it every evaluation epoch;
the baselines stage gives the baselines the same score, so the two are comparable. Its
own module so that neither stage imports the other.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

EVAL_BATCH_SIZE = 256  # batching of the evaluation passes only (no effect on values)


@torch.no_grad()
def evaluate_samples(model: nn.Module, samples, indices: np.ndarray, device: torch.device,
                     batch_size: int = EVAL_BATCH_SIZE) -> dict[str, float]:
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

