"""The models of the paper (spec sections 7-8) behind one config and one builder.

Every model maps windows (B, L, 3, 3) of ids in [0, vocab) to logits (B, vocab) read at
the LAST position only, and carries its `.config`; a causal one also gives the logits at
every position (`forward_all`, (B, L, vocab): `base.NextTokenModel`).

    cfg = ModelConfig.from_dict({"family": "rnn", "d_model": 81, "d_state": 64, "depth": 2})
    model = build_model(cfg)  # RNN Bi PxBy-conv: 78,633 parameters
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pxby_lib.config import EMBEDDINGS, FAMILIES, ModelConfig

from .embed import CenterEmbed, PxByEmbed
from .rnn import RNNModel
from .ssm import MambaBlock, SSMModel
from .transformer import CausalTransformerModel, TransformerModel


def build_model(cfg: ModelConfig | dict[str, Any], context: int = 512) -> nn.Module:
    """A freshly initialised model for cfg (a ModelConfig or a dict for from_dict).
    context: the positions of a `transformer_causal` (pass the training seq_len; the
    other families have no positions and ignore it)."""
    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(cfg)
    if cfg.family == "transformer_causal":
        return CausalTransformerModel(cfg, context)
    builders = {"rnn": RNNModel, "transformer": TransformerModel, "ssm": SSMModel}
    return builders[cfg.family](cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the spec's counts measure)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "EMBEDDINGS", "FAMILIES", "CausalTransformerModel", "CenterEmbed", "MambaBlock",
    "ModelConfig", "PxByEmbed", "RNNModel", "SSMModel", "TransformerModel", "build_model",
    "count_parameters",
]
