"""The models of the paper (spec sections 7-8) behind one config and one builder.

Every model maps windows (B, L, 3, 3) of ids in [0, vocab) to logits (B, vocab) read at
the LAST position only, and carries its `.config`.

    cfg = ModelConfig.from_dict({"family": "rnn", "d_model": 81, "d_state": 64, "depth": 2})
    model = build_model(cfg)  # RNN Bi PxBy-conv: 78,633 parameters
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from .embed import CenterEmbed, PxByEmbed
from .rnn import RNNModel
from .ssm import MambaBlock, SSMModel
from .transformer import CausalTransformerModel, TransformerModel

FAMILIES = ("rnn", "transformer", "transformer_causal", "ssm")
EMBEDDINGS = ("pxby", "center")


@dataclass(frozen=True)
class ModelConfig:
    """One row of Table 1. d_model is the table's "input embedding D", d_state its "hidden
    state" (LSTM hidden size, or the Mamba state size N). For the transformers the
    direction and the state do not apply (the width is (D // 4) * 4)."""

    family: str  # 'rnn' | 'transformer' | 'transformer_causal' (not the paper's) | 'ssm'
    bidirectional: bool = True
    embedding: str = "pxby"  # 'pxby' | 'center'
    conv: bool = True  # gated 3x3 convolution inside PxByEmbed
    d_model: int = 81
    d_state: int = 64
    depth: int = 2
    vocab_size: int = 113

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> ValueError:
            value = getattr(self, key)
            return ValueError(f"ModelConfig: {key}={value!r} ({type(value).__name__}) is "
                              f"invalid; allowed: {allowed}")

        if self.family not in FAMILIES:
            raise bad("family", " | ".join(map(repr, FAMILIES)))
        if self.embedding not in EMBEDDINGS:
            raise bad("embedding", " | ".join(map(repr, EMBEDDINGS)))
        for key in ("bidirectional", "conv"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "true or false (a YAML/JSON boolean, not a string)")
        minimum = {"d_model": 4 if self.family.startswith("transformer") else 1,
                   "d_state": 1, "depth": 1, "vocab_size": 1}
        for key, low in minimum.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(key, f"an integer >= {low}")
        if self.family == "rnn" and self.bidirectional and self.d_state % 2:
            raise bad("d_state", "an even integer for a bidirectional RNN (two halves)")
        if self.embedding == "center" and self.conv:
            raise bad("conv", "false with embedding 'center' (the conv is part of PxByEmbed)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Validate a mapping (e.g. from params.yaml) into a config; ValueError names the fix."""
        if not isinstance(d, dict):
            raise ValueError(f"ModelConfig.from_dict: expected a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"ModelConfig: unknown key(s) {unknown}; allowed keys: {known}")
        if "family" not in d:
            raise ValueError(f"ModelConfig: missing key 'family'; allowed: {FAMILIES}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(cfg: ModelConfig | dict[str, Any]) -> nn.Module:
    """A freshly initialised model for cfg (a ModelConfig or a dict for from_dict)."""
    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(cfg)
    builders = {"rnn": RNNModel, "transformer": TransformerModel,
                "transformer_causal": CausalTransformerModel, "ssm": SSMModel}
    return builders[cfg.family](cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the spec's counts measure)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "EMBEDDINGS", "FAMILIES", "CausalTransformerModel", "CenterEmbed", "MambaBlock",
    "ModelConfig", "PxByEmbed", "RNNModel", "SSMModel", "TransformerModel", "build_model",
    "count_parameters",
]
