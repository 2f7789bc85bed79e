"""Checkpoints: safe to open, self-describing, written atomically.

A checkpoint is a plain dict saved with `torch.save` and read back with
`torch.load(weights_only=True)`, so opening one never unpickles arbitrary objects.
It holds only tensors, numbers, strings, lists and dicts:

    format        "pxby-checkpoint/1"
    model_config  ModelConfig.to_dict()        (rebuilds the architecture)
    model_state   model.state_dict()
    optimizer     optimizer.state_dict()       (resume)
    rng           {"torch": ByteTensor, "shuffle": ByteTensor}   (resume)
    epoch         last completed epoch
    settings      {"train": TrainConfig as a dict, "seed": k, "objective": 'every' if not 'last'}
    history       the evaluation log rows so far (list of dicts)
    best_test_loss, best_epoch
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pxby_lib.atomic import write_bytes

FORMAT = "pxby-checkpoint/1"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write `payload` to `path` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **payload}
    buffer = io.BytesIO()  # saving to a buffer, not to the random temp name, keeps the
    torch.save(payload, buffer)  # zip's internal folder name fixed: identical bytes run after run
    write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: `dvc pull {path}` restores a committed one "
            "(`dvc repro train@<dataset>-<row>` trains it)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle with code objects, ...
        raise ValueError(
            f"checkpoint {path} cannot be read safely ({type(exc).__name__}: {exc}): it is "
            "truncated or not a checkpoint this code wrote (`dvc checkout` restores a committed one)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a {FORMAT} file")
    return payload


def load_state_into(model: nn.Module, payload: dict[str, Any], source: str = "checkpoint") -> None:
    """Load weights after checking that the checkpoint was made for this architecture."""
    saved = payload["model_config"]
    own = model.config.to_dict()
    if saved != own:
        diff = {k: (saved.get(k), own.get(k)) for k in sorted(set(saved) | set(own))
                if saved.get(k) != own.get(k)}
        raise ValueError(
            f"{source} was trained for a different architecture; differing keys "
            f"(checkpoint, model): {diff}. Build the model with build_model(checkpoint "
            "config) or load_model(path)"
        )
    model.load_state_dict(payload["model_state"], strict=True)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as and load its weights (eval mode)."""
    from .models import build_model

    payload = read_checkpoint(path, map_location=device)
    # a transformer_causal has positions for its training length (the others ignore it)
    model = build_model(payload["model_config"], context=payload["settings"]["train"]["seq_len"])
    load_state_into(model, payload, source=str(path))
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k not in ("model_state", "optimizer", "rng")}
    return model, meta
