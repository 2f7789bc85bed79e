"""What every model is: windows (B, L, 3, 3) -> `encode` (B, L, W) -> `head` (W -> vocab).

`forward` gives the paper's output, the next-token logits read at the LAST position only
(B, vocab): what the paper trains ('last' objective) and what generation reads.
`forward_all` gives the logits at EVERY position (B, L, vocab) from the same layers, for
training on every position ('every' objective); only a causal model has them (its output
at position t depends on windows 0..t alone: an LSTM or Mamba stack read left to right,
or `transformer_causal`), since a bidirectional or unmasked model sees the very windows
whose centres it would predict.
"""

from __future__ import annotations

from torch import Tensor, nn

from .embed import check_windows


class NextTokenModel(nn.Module):
    causal: bool  # position t sees windows 0..t only

    def encode(self, x: Tensor) -> Tensor:  # (B, L, 3, 3) -> (B, L, W)
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        check_windows(x, self.config.vocab_size)
        return self.head(self.encode(x)[:, -1])  # (B, vocab): the last position only

    def forward_all(self, x: Tensor) -> Tensor:
        if not self.causal:
            raise ValueError(f"{self.config.family} (bidirectional={self.config.bidirectional}) "
                             "is not causal: it has no every-position logits")
        check_windows(x, self.config.vocab_size)
        return self.head(self.encode(x))  # (B, L, vocab): the next token after each position
