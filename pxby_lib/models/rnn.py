"""RNN family (spec section 8): PxBy/centre embedding -> LSTM stack -> head on the last position.

First layer LSTM(D, state // 2, bidirectional) (uni: LSTM(D, state)), then
LSTM(state, state, num_layers=depth - 1) unidirectional, then Linear(state, vocab).
No dropout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from .embed import build_embedding, check_windows

if TYPE_CHECKING:
    from . import ModelConfig


class RNNModel(nn.Module):
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

    def forward(self, x: Tensor) -> Tensor:
        check_windows(x, self.config.vocab_size)
        h, _ = self.first(self.embed(x))  # (B, L, state)
        if self.rest is not None:
            h, _ = self.rest(h)  # (B, L, state)
        return self.head(h[:, -1])  # (B, vocab): the last position only
