"""The held-out next-token metric: the same for every row and baseline, on test items.

Per run (seed k), `heldout_positions` draws `evaluate.next_positions` positions of the
seed's test items once (a seeded draw: every row and baseline of seed k is scored on the
same positions, so differences between rows are paired); `next_token_scores` gives each
the `train.seq_len` windows before it as context, as a training sample would, and scores
the prediction of its centre: NLL in nats per token and accuracy, overall and per
modality. Unlike the training log's one-step score (one fixed target per sample, the
stopping rule's), it samples every kind of position of every test item, and it is what
the verdicts use besides the generated tokens' accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pxby_lib.onestep import EVAL_BATCH_SIZE
from pxby_lib.sequence import part_index

PART_IMAGE = 1  # sequence.part_index: 0 shape string, 1 image, 2 caption


def heldout_positions(lengths: list[int], n: int, seed: int) -> np.ndarray:
    """(min(n, total), 2) int64 (item, position): `n` positions drawn without replacement
    from every position of the items of `lengths` (a seeded draw: the same positions for
    every row and baseline scored with that seed and items), in item order."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rng = np.random.default_rng([seed, 20409])  # its own stream: nothing else draws from it
    flat = np.sort(rng.choice(offsets[-1], size=min(n, int(offsets[-1])), replace=False))
    item = np.searchsorted(offsets, flat, side="right") - 1
    return np.stack([item, flat - offsets[item]], axis=1).astype(np.int64)


@torch.no_grad()
def next_token_scores(model: nn.Module, items: list[np.ndarray], positions: np.ndarray,
                      seq_len: int, device: torch.device,
                      batch_size: int = EVAL_BATCH_SIZE) -> tuple[pd.DataFrame, dict[str, float]]:
    """The held-out next-token metric: at each (item, position p) the model reads the
    `seq_len` windows before p (wrapping inside the item, as the training samples do:
    the sample that starts at p - seq_len) and predicts the centre of p. Returns one line
    per position (item, position, image, next_nll, next_acc) and the summary: NLL (nats
    per token, mean) and accuracy, overall and per modality (image: the sprite's tokens;
    text: the shape string and the caption). A model without probabilities (the `copy`
    baseline: `has_loss` False) gets no NLL."""
    was_training = model.training
    model.eval()
    parts = {int(k): part_index(items[k][:, 1, 1]) for k in np.unique(positions[:, 0])}
    nll, hit = [], []
    for start in range(0, len(positions), batch_size):
        chunk = positions[start:start + batch_size]
        x = np.stack([items[k][(p - seq_len + np.arange(seq_len)) % len(items[k])] for k, p in chunk])
        y = torch.as_tensor([int(items[k][p, 1, 1]) for k, p in chunk])
        logits = model(torch.from_numpy(x).long().to(device)).cpu()  # (B, V)
        nll.append(F.cross_entropy(logits, y, reduction="none"))
        hit.append(logits.argmax(-1) == y)
    model.train(was_training)
    has_loss = getattr(model, "has_loss", True)
    frame = pd.DataFrame({
        "item": positions[:, 0], "position": positions[:, 1],
        "image": [bool(parts[int(k)][p] == PART_IMAGE) for k, p in positions],
        "next_nll": torch.cat(nll).double().numpy() if has_loss else np.nan,
        "next_acc": torch.cat(hit).double().numpy()})
    summary: dict[str, float] = {"n_positions": len(frame), "n_image": int(frame["image"].sum()),
                                 "n_text": int((~frame["image"]).sum())}
    for name, part in (("", frame), ("_image", frame[frame["image"]]), ("_text", frame[~frame["image"]])):
        summary[f"nll{name}"] = float(part["next_nll"].mean()) if has_loss and len(part) else None
        summary[f"acc{name}"] = float(part["next_acc"].mean()) if len(part) else None
    return frame, summary
