"""RNN family (spec section 8): PxBy/centre embedding -> LSTM stack -> head on the last position
(and, unidirectional, on every position: `base.NextTokenModel`).

First layer LSTM(D, state // 2, bidirectional) (uni: LSTM(D, state)), then
LSTM(state, state, num_layers=depth - 1) unidirectional, then Linear(state, vocab).
No dropout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .base import NextTokenModel
from .embed import build_embedding
from .stepper import EmbeddedStepper

if TYPE_CHECKING:
    from . import ModelConfig


class RNNModel(NextTokenModel):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d, state = config.d_model, config.d_state
        self.embed = build_embedding(config.embedding, d, config.vocab_size, config.conv)
        if config.bidirectional:  # both directions' outputs concatenated: state wide
            self.first = nn.LSTM(d, state // 2, batch_first=True, bidirectional=True)
        else:
            self.first = nn.LSTM(d, state, batch_first=True)
        self.rest = (nn.LSTM(state, state, num_layers=config.depth - 1, batch_first=True)
                     if config.depth > 1 else None)
        self.head = nn.Linear(state, config.vocab_size)

    @property
    def causal(self) -> bool:
        return not self.config.bidirectional

    def encode(self, x: Tensor) -> Tensor:
        h, _ = self.first(self.embed(x))  # (B, L, state)
        if self.rest is not None:
            h, _ = self.rest(h)  # (B, L, state)
        return h

    def stepper(self, prompts: Tensor, capacity: int) -> RNNStepper:
        """The sequential path of generation: see `RNNStepper` (tests/test_incremental.py)."""
        return RNNStepper(self, prompts, capacity)


# ---- the sequential path: one appended window at a time ---------------------------------


def _lstm_direction(lstm: nn.LSTM, suffix: str) -> nn.LSTM:
    """Layer 0 of `lstm` in one direction ('' forward, '_reverse' backward) as a uni LSTM
    with a copy of its weights (built on 'meta': no random init, the global RNG is
    untouched; copied so that cuDNN's flattening leaves the model's own tensors alone)."""
    single = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True, device="meta")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    single.load_state_dict({f"{k}_l0": getattr(lstm, f"{k}_l0{suffix}").detach().clone()
                            for k in names}, assign=True)
    single.flatten_parameters()  # one contiguous cuDNN buffer on CUDA; a no-op on the CPU
    return single


class RNNStepper(EmbeddedStepper):
    """RNNModel: first LSTM (bi or uni) -> `rest` LSTM (uni, depth - 1 layers) -> head."""

    def __init__(self, model: RNNModel, prompts: Tensor, capacity: int):
        super().__init__(model, prompts, capacity)
        self.bidirectional = model.first.bidirectional
        emb = self.emb[:, : self.n]  # (B, P, D)
        if not self.bidirectional:  # all causal: carry each layer's state
            out, self.first_state = model.first(emb)  # (B, P, H)
            self.rest_state = None
            if model.rest is not None:
                out, self.rest_state = model.rest(out)  # (B, P, H)
            self.last = out[:, -1]  # (B, H)
            return
        self.forward_dir = _lstm_direction(model.first, "")
        self.backward_dir = _lstm_direction(model.first, "_reverse")
        out, self.first_state = self.forward_dir(emb)  # (B, P, H)
        self.forward_out = out.new_zeros(self.B, capacity, out.shape[-1])  # (B, T, H)
        self.forward_out[:, : self.n] = out

    def logits(self) -> Tensor:
        model = self.model
        if not self.bidirectional:
            return model.head(self.last)  # (B, V)
        n = self.n
        if model.rest is None:  # the backward direction at the last position saw one window
            backward_last, _ = self.backward_dir(self.emb[:, n - 1 : n])  # (B, 1, H)
            return model.head(torch.cat([self.forward_out[:, n - 1], backward_last[:, 0]], -1))
        backward, _ = self.backward_dir(self.emb[:, :n].flip(1))  # (B, n, H), reversed time
        first = torch.cat([self.forward_out[:, :n], backward.flip(1)], -1)  # (B, n, 2H)
        out, _ = model.rest(first)  # (B, n, H2)
        return model.head(out[:, -1])  # (B, V)

    def _append_embedded(self, new: Tensor) -> None:
        model = self.model
        if not self.bidirectional:
            out, self.first_state = model.first(new, self.first_state)  # (B, 1, H)
            if model.rest is not None:
                out, self.rest_state = model.rest(out, self.rest_state)
            self.last = out[:, -1]
            return
        out, self.first_state = self.forward_dir(new, self.first_state)  # (B, 1, H)
        self.forward_out[:, self.n] = out[:, 0]
