"""Transformer family (spec section 8) and an improved causal variant (NOT the paper's).

Paper ('transformer'): width d = (D // 4) * 4 (the embedding is built at d), a PyTorch
TransformerEncoder of `depth` post-norm ReLU layers, 4 heads, feed-forward 4d, dropout
0.1, NO mask and NO positional encoding, head Linear(d, vocab) on the last position.
Without positions or a mask the encoder is permutation-equivariant, so the output at the
last position ignores the order of the other positions (spec section 14, flaw 5).

'transformer_causal' (this project's improvement, clearly not the paper's model): the
same layers plus a causal mask and a learned positional embedding of `context` positions,
the training sequence length (`train.seq_len`): positions past it would never be trained.
Longer inputs are read as nanoGPT's generate reads them: the last `context` windows only
(a sliding context), so generation runs past the training length on trained positions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import NextTokenModel
from .embed import build_embedding
from .stepper import EmbeddedStepper

if TYPE_CHECKING:
    from . import ModelConfig

N_HEADS = 4


def transformer_width(d_model: int) -> int:
    """The paper's width: D rounded down to a multiple of the 4 heads (81 -> 80)."""
    return (d_model // N_HEADS) * N_HEADS


class TransformerModel(NextTokenModel):
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

    def stepper(self, prompts: Tensor, capacity: int) -> TransformerStepper | None:
        """The incremental path of generation (`TransformerStepper`), for the paper's
        unmasked layers; None (the caller re-runs the model) for anything else."""
        if self.causal or not _transformer_supported(self):
            return None
        return TransformerStepper(self, prompts, capacity)


class CausalTransformerModel(TransformerModel):
    """NOT the paper's model: causal mask + learned positions of the last `context` windows."""

    causal = True

    def __init__(self, config: ModelConfig, context: int = 512):
        super().__init__(config)
        self.context = context
        self.position = nn.Embedding(context, transformer_width(config.d_model))

    def encode(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        if length > self.context:
            raise ValueError(f"transformer_causal: input length {length} exceeds its context "
                             f"{self.context} (the training seq_len); feed at most the last "
                             f"{self.context} windows (forward does)")
        e = self.embed(x) + self.position(torch.arange(length, device=x.device))  # (B, L, d)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device)
        return self.encoder(e, mask=mask, is_causal=True)  # (B, L, d)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x[:, -self.context :])  # (B, vocab): the sliding context


# ---- the incremental path: one appended window at a time ---------------------------------

def _encoder_layer(layer: nn.TransformerEncoderLayer, x: Tensor, q: Tensor, k: Tensor,
                   v: Tensor) -> Tensor:
    """Post-norm encoder layer, unmasked, given its projections: queries q (B, m, d) of the
    LAST m positions of x (B, n, d) (m = n, or 1 when only the last output is needed) and
    keys, values k, v (B, n, d) of all n. Returns the outputs of those m positions (B, m, d)."""
    attn = layer.self_attn
    heads = attn.num_heads
    b, n, d = x.shape
    m = q.shape[1]
    q, k, v = (t.reshape(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    a = F.scaled_dot_product_attention(q, k, v)  # (B, h, m, d/h)
    a = attn.out_proj(a.transpose(1, 2).reshape(b, m, d))  # (B, m, d)
    x = layer.norm1(x[:, n - m :] + a)
    return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))


class TransformerStepper(EmbeddedStepper):
    """TransformerModel (unmasked, no positions): keeps layer 1's Q, K, V of every window;
    the last layer projects the last query only (only the last position reaches the head)."""

    def __init__(self, model: TransformerModel, prompts: Tensor, capacity: int):
        super().__init__(model, prompts, capacity)
        first = model.encoder.layers[0]
        self.qkv = self.emb.new_zeros(self.B, capacity, 3 * self.emb.shape[-1])  # (B, T, 3d)
        self.qkv[:, : self.n] = self._in_proj(first, self.emb[:, : self.n])

    @staticmethod
    def _in_proj(layer: nn.TransformerEncoderLayer, x: Tensor, rows: slice = slice(None)) -> Tensor:
        """x (B, n, d) -> rows of the stacked (3d, d) projection: all = Q, K, V (B, n, 3d)."""
        attn = layer.self_attn
        return F.linear(x, attn.in_proj_weight[rows], attn.in_proj_bias[rows])

    def logits(self) -> Tensor:
        layers = self.model.encoder.layers
        x, n = self.emb[:, : self.n], self.n
        d = x.shape[-1]
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            if i == 0:
                q, k, v = self.qkv[:, :n].chunk(3, -1)  # (B, n, d) each
                q = q[:, -1:] if last else q
            else:
                q = self._in_proj(layer, x[:, -1:] if last else x, slice(0, d))  # (B, 1 or n, d)
                k, v = self._in_proj(layer, x, slice(d, None)).chunk(2, -1)  # (B, n, d) each
            x = _encoder_layer(layer, x, q, k, v)  # (B, n, d), the last layer (B, 1, d)
        return self.model.head(x[:, -1])  # (B, V)

    def _append_embedded(self, new: Tensor) -> None:
        self.qkv[:, self.n] = self._in_proj(self.model.encoder.layers[0], new[:, 0])



def _transformer_supported(model: TransformerModel) -> bool:
    """The stepper re-implements PyTorch's default post-norm ReLU layer: check it is one."""
    return all(not layer.norm_first and layer.activation is F.relu
               and layer.self_attn._qkv_same_embed_dim and layer.self_attn.in_proj_bias is not None
               for layer in model.encoder.layers) and model.encoder.norm is None
