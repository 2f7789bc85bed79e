"""Transformer family (spec section 8) and an improved causal variant (NOT the paper's).

Paper ('transformer'): width d = (D // 4) * 4 (the embedding is built at d), a PyTorch
TransformerEncoder of `depth` post-norm ReLU layers, 4 heads, feed-forward 4d, dropout
0.1, NO mask and NO positional encoding, head Linear(d, vocab) on the last position.
Without positions or a mask the encoder is permutation-equivariant, so the output at the
last position ignores the order of the other positions (spec section 14, flaw 5).

'transformer_causal' (this project's improvement, clearly not the paper's model): the
same layers plus a causal mask and a learned positional embedding of `max_len` positions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .embed import build_embedding, check_windows

if TYPE_CHECKING:
    from . import ModelConfig

N_HEADS = 4


def transformer_width(d_model: int) -> int:
    """The paper's width: D rounded down to a multiple of the 4 heads (81 -> 80)."""
    return (d_model // N_HEADS) * N_HEADS


class TransformerModel(nn.Module):
    """The paper's Transformer: no mask, no positional encoding."""

    causal = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = transformer_width(config.d_model)
        self.embed = build_embedding(config.embedding, d, config.vocab_size, config.conv)
        layer = nn.TransformerEncoderLayer(d, N_HEADS, dim_feedforward=4 * d, dropout=0.1,
                                           batch_first=True)  # post-norm, ReLU: the defaults
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.head = nn.Linear(d, config.vocab_size)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(self.embed(x))  # (B, L, d)

    def forward(self, x: Tensor) -> Tensor:
        check_windows(x, self.config.vocab_size)
        return self.head(self.encode(x)[:, -1])  # (B, vocab): the last position only


class CausalTransformerModel(TransformerModel):
    """NOT the paper's model: causal mask + learned positions (inputs up to max_len long)."""

    causal = True

    def __init__(self, config: ModelConfig, max_len: int = 512):
        super().__init__(config)
        self.max_len = max_len
        self.position = nn.Embedding(max_len, transformer_width(config.d_model))

    def encode(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"transformer_causal: input length {length} exceeds max_len "
                             f"{self.max_len}; feed at most the last {self.max_len} windows")
        e = self.embed(x) + self.position(torch.arange(length, device=x.device))  # (B, L, d)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device)
        return self.encoder(e, mask=mask, is_causal=True)  # (B, L, d)
