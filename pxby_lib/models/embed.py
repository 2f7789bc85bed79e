"""Input embeddings (spec section 7): (B, L, 3, 3) window ids -> (B, L, D) vectors.

PxByEmbed embeds all nine ids of every window, optionally mixes them with a gated 3x3
convolution, and projects the flattened (E, row, col) cube to D. CenterEmbed looks up
the centre id only. No positional encoding anywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_windows(x: Tensor, vocab_size: int) -> None:
    """Raise a ValueError unless x is a (B, L, 3, 3) integer tensor of ids in [0, vocab)."""
    if x.dim() != 4 or tuple(x.shape[2:]) != (3, 3):
        raise ValueError(f"model input must be windows of shape (B, L, 3, 3), got {tuple(x.shape)}")
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"model input must hold integer token ids, got dtype {x.dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab_size):
        raise ValueError(f"model input ids must lie in [0, {vocab_size}), got "
                         f"[{int(x.min())}, {int(x.max())}]")


class PxByEmbed(nn.Module):
    """Embedding(vocab, E) on each of the 9 cells -> [gated conv] -> Linear(9E, D) -> LayerNorm.

    E = max(9, D // 9). With conv: x = s x + (1 - s) Conv2d(E, E, 3, padding 1)(x), where
    s = sigmoid(alpha) and alpha (1, 1, 3, 3) starts uniform in [0, 1) (one gate per cell).
    Without conv: x = s x. No padding_idx: id 0 has a trained vector like any other.
    """

    def __init__(self, d_model: int, vocab_size: int = 113, conv: bool = True):
        super().__init__()
        self.dim = max(9, d_model // 9)  # E
        self.embedding = nn.Embedding(vocab_size, self.dim)
        self.conv = nn.Conv2d(self.dim, self.dim, kernel_size=3, padding=1) if conv else None
        self.alpha = nn.Parameter(torch.rand(1, 1, 3, 3))  # uniform [0, 1)
        self.projection = nn.Linear(9 * self.dim, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, length = x.shape[:2]
        e = self.embedding(x.reshape(b * length, 3, 3))  # (B*L, 3, 3, E)
        e = e.permute(0, 3, 1, 2)  # (B*L, E, 3, 3)
        gate = torch.sigmoid(self.alpha)  # (1, 1, 3, 3)
        if self.conv is None:
            e = gate * e
        else:
            e = gate * e + (1 - gate) * self.conv(e)  # (B*L, E, 3, 3)
        e = e.reshape(b, length, 9 * self.dim)  # flattened in (E, row, col) order
        return self.norm(self.projection(e))  # (B, L, D)


class CenterEmbed(nn.Module):
    """Embedding(vocab, D) of the centre id x[:, :, 1, 1] only (the "Center" rows)."""

    def __init__(self, d_model: int, vocab_size: int = 113):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding(x[:, :, 1, 1])  # (B, L, D)


def build_embedding(kind: str, d_model: int, vocab_size: int, conv: bool) -> nn.Module:
    """'pxby' -> PxByEmbed(d_model, conv); 'center' -> CenterEmbed(d_model)."""
    if kind == "pxby":
        return PxByEmbed(d_model, vocab_size, conv)
    if kind == "center":
        return CenterEmbed(d_model, vocab_size)
    raise ValueError(f"embedding must be 'pxby' or 'center', got {kind!r}")
