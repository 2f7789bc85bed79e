"""Steppers: model(windows[:, :n]) for n = P, P+1, ..., keeping what does not change.

Spec section 10 runs the model on the WHOLE growing window sequence at every step and
reads the logits at the last position. That costs O(n) per new token for every family,
yet much of the work is the same from one step to the next. A `Stepper` keeps it:

  model                      kept between steps                  recomputed at each step
  any family                 the embedding of every window       -
  RNN uni                    every layer's (h, c)                nothing: O(1)
  RNN bi, depth 1            forward (h, c)                      backward LSTM on the last window
  RNN bi, depth >= 2         forward outputs and (h, c)          backward LSTM and layers 2.. over n
  SSM uni                    every block's conv state and h      nothing: O(1)
  SSM bi, depth 1            forward block's conv state and h    block on the last window alone
  SSM bi, depth >= 2         forward outputs, in_proj of all     backward branch and blocks 2.. over n
  Transformer (paper)        layer 1's Q, K, V of every window   layers over n; last layer: last query
  anything else              -                                   everything (`FullRecompute`)

Why bidirectional layers can't be kept: the backward direction's output at position i
has read every window after i, so one appended window changes all of them and every
layer above. Why depth-1 bidirectional models are cheap anyway: the backward direction
at the LAST position has read the last window only (for Mamba's causal conv and scan as
for the LSTM), and the head reads the last position only.

Each family owns its stepper next to its forward pass (`RNNModel.stepper`,
`SSMModel.stepper`, `TransformerModel.stepper`); this module holds what they share.
Every stepper is mathematically the model's forward; in float32 the logits agree with
`model(windows)` to ~1e-6 (tests/test_incremental.py checks every family and direction
against the full forward, step by step). `FullRecompute` is the literal protocol, kept
for checking and as the fallback (`generate(..., incremental=False)`).

Glossary: B rows, P prompt windows, T = capacity (prompt + new windows), n windows so
far, D model width, H LSTM hidden size per direction, ED Mamba inner width (expand * D),
N Mamba state size, K Mamba conv width (its conv state: the last K - 1 inputs),
d Transformer width, h heads.
"""

from __future__ import annotations

from torch import Tensor, nn

from .embed import check_windows


class Stepper:
    """Logits of the model at the last of n windows; append() adds one window per row.

        stepper = make_stepper(model, prompts, capacity)  # prompts (B, P, 3, 3) long
        logits = stepper.logits()                         # (B, V) = model(prompts)
        stepper.append(windows)                           # (B, 3, 3): n -> n + 1
    """

    def __init__(self, model: nn.Module, prompts: Tensor, capacity: int):
        if model.training:
            raise ValueError("generation needs model.eval() (dropout must be off)")
        self.model = model
        self.B, self.n = prompts.shape[:2]
        if capacity < self.n:
            raise ValueError(f"capacity {capacity} is shorter than the prompt ({self.n} windows)")
        self.capacity = capacity

    def logits(self) -> Tensor:
        raise NotImplementedError

    def append(self, windows: Tensor) -> None:
        if self.n >= self.capacity:
            raise ValueError(f"stepper is full: capacity {self.capacity} windows; "
                             "make it with a larger capacity")
        self._append(windows)
        self.n += 1

    def _append(self, windows: Tensor) -> None:
        raise NotImplementedError


class FullRecompute(Stepper):
    """The literal protocol: run the whole model on all n windows at every step."""

    def __init__(self, model: nn.Module, prompts: Tensor, capacity: int):
        super().__init__(model, prompts, capacity)
        self.windows = prompts.new_zeros(self.B, capacity, 3, 3)  # (B, T, 3, 3)
        self.windows[:, : self.n] = prompts

    def logits(self) -> Tensor:
        return self.model(self.windows[:, : self.n])  # (B, V)

    def _append(self, windows: Tensor) -> None:
        self.windows[:, self.n] = windows


class EmbeddedStepper(Stepper):
    """Keeps the embedding of every window: (B, T, D), filled up to n."""

    def __init__(self, model: nn.Module, prompts: Tensor, capacity: int):
        super().__init__(model, prompts, capacity)
        check_windows(prompts, model.config.vocab_size)  # what model(windows) would check
        prompt_emb = model.embed(prompts)  # (B, P, D)
        self.emb = prompt_emb.new_zeros(self.B, capacity, prompt_emb.shape[-1])  # (B, T, D)
        self.emb[:, : self.n] = prompt_emb

    def _append(self, windows: Tensor) -> None:
        new = self.model.embed(windows[:, None])  # (B, 1, D)
        self.emb[:, self.n] = new[:, 0]
        self._append_embedded(new)

    def _append_embedded(self, new: Tensor) -> None:
        """React to the new window's embedding (B, 1, D); self.n is its position."""


def make_stepper(model: nn.Module, prompts: Tensor, capacity: int,
                 incremental: bool = True) -> Stepper:
    """The fastest exact stepper for `model`: its own (`model.stepper`) when it has one,
    else, or with incremental=False, the literal full re-run (`FullRecompute`)."""
    own = getattr(model, "stepper", None) if incremental else None
    stepper = own(prompts, capacity) if own is not None else None
    return stepper if stepper is not None else FullRecompute(model, prompts, capacity)
