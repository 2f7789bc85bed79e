"""Incremental forward passes for generation: model(windows[:, :n]) for n = P, P+1, ... .

Spec section 10 runs the model on the WHOLE growing window sequence at every step and
reads the logits at the last position. That costs O(n) per new token for every family,
yet much of the work is the same from one step to the next. A `Stepper` keeps it:

  model                      kept between steps                  recomputed at each step
  any family                 the embedding of every window       -
  RNN uni                    every layer's (h, c)                nothing: O(1)
  RNN bi, depth 1            forward (h, c)                      backward LSTM on the last window
  RNN bi, depth >= 2         forward outputs and (h, c)          backward LSTM and layers 2.. over n
  SSM uni                    every block's conv window and h     nothing: O(1)
  SSM bi, depth 1            forward block's conv window and h   block on the last window alone
  SSM bi, depth >= 2         forward outputs, in_proj of all     backward branch and blocks 2.. over n
  Transformer (paper)        layer 1's Q, K, V of every window   layers over n; last layer: last query
  anything else              -                                   everything (`FullRecompute`)

Why bidirectional layers can't be kept: the backward direction's output at position i
has read every window after i, so one appended window changes all of them and every
layer above. Why depth-1 bidirectional models are cheap anyway: the backward direction
at the LAST position has read the last window only (for Mamba's causal conv and scan as
for the LSTM), and the head reads the last position only.

Every stepper is mathematically the model's forward; in float32 the logits agree with
`model(windows)` to ~1e-6 (tests/test_incremental.py checks every family and direction
against the full forward, step by step). `FullRecompute` is the literal protocol, kept
for checking and as the fallback (`generate(..., incremental=False)`).

Glossary: B rows, P prompt windows, T = capacity (prompt + new windows), n windows so
far, D model width, H LSTM hidden size per direction, ED Mamba inner width (expand * D),
N Mamba state size, K Mamba conv width, d Transformer width, h heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pxby_lib.models import RNNModel, SSMModel, TransformerModel
from pxby_lib.models.embed import check_windows


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


class _Embedded(Stepper):
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


# ---- RNN ---------------------------------------------------------------------------------

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


class RNNStepper(_Embedded):
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


# ---- SSM ---------------------------------------------------------------------------------
# A Mamba block's state (conv window and scan state h) comes from its parallel path over
# the prompt (`MambaBlock.mix(xz, return_state=True)`, the fast scan returning h_P), and
# each appended window advances it with the block's sequential path (`MambaBlock.step`).


class SSMStepper(_Embedded):
    """SSMModel: first block (bi: LayerNorm(M(x) + flip(M(flip(x)))), uni: M(x)) -> blocks."""

    def __init__(self, model: SSMModel, prompts: Tensor, capacity: int):
        super().__init__(model, prompts, capacity)
        self.bidirectional = model.norm is not None
        blocks = model.layers
        # all-causal stacks carry every block's state; bidirectional ones the first block's
        self.carried = 1 if self.bidirectional else len(blocks)
        h = self.emb[:, : self.n]  # (B, P, D)
        self.states = []
        for i, block in enumerate(blocks[: self.carried]):
            xz = block.in_proj(h)  # (B, P, 2ED)
            if i == 0 and self.bidirectional and len(blocks) > 1:
                # the backward branch re-reads the first block's in_proj of every window
                self.in_proj = xz.new_zeros(self.B, capacity, xz.shape[-1])  # (B, T, 2ED)
                self.in_proj[:, : self.n] = xz
            h, window, state = block.mix(xz, return_state=True)  # (B, P, D), the state
            self.states.append((window, state))
        self.last = h[:, -1]  # (B, D): output of the last carried block at the last position
        if self.bidirectional and len(blocks) > 1:
            self.forward_out = h.new_zeros(self.B, capacity, h.shape[-1])  # (B, T, D)
            self.forward_out[:, : self.n] = h

    def logits(self) -> Tensor:
        model, n = self.model, self.n
        if not self.bidirectional:
            return model.head(self.last)  # (B, V)
        first = model.layers[0]
        if len(model.layers) == 1:  # backward branch at the last position: one window
            backward_last, _, _ = first.step(self.emb[:, n - 1])  # (B, D), from the zero state
            return model.head(model.norm(self.last + backward_last))
        # backward branch over all n windows: the block after its (pointwise) in_proj
        backward = first.mix(self.in_proj[:, :n].flip(1))  # (B, n, D), reversed time
        h = model.norm(self.forward_out[:, :n] + backward.flip(1))  # (B, n, D)
        for block in model.layers[1:]:
            h = block(h)  # (B, n, D): no residual, no norm
        return model.head(h[:, -1])

    def _append_embedded(self, new: Tensor) -> None:
        h = new[:, 0]  # (B, D)
        for i, block in enumerate(self.model.layers[: self.carried]):
            h, window, state = block.step(h, *self.states[i])  # (B, D), the new state
            self.states[i] = (window, state)
        self.last = h
        if self.bidirectional and len(self.model.layers) > 1:
            self.forward_out[:, self.n] = h
            self.in_proj[:, self.n] = self.model.layers[0].in_proj(new[:, 0])


# ---- Transformer (the paper's: no mask, no positions) ------------------------------------

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


class TransformerStepper(_Embedded):
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


def make_stepper(model: nn.Module, prompts: Tensor, capacity: int,
                 incremental: bool = True) -> Stepper:
    """The fastest exact stepper for `model` (FullRecompute if incremental is False or the
    model is not one of the paper's: e.g. transformer_causal)."""
    if incremental:
        if isinstance(model, RNNModel):
            return RNNStepper(model, prompts, capacity)
        if isinstance(model, SSMModel):
            return SSMStepper(model, prompts, capacity)
        if (isinstance(model, TransformerModel) and not model.causal
                and _transformer_supported(model)):
            return TransformerStepper(model, prompts, capacity)
    return FullRecompute(model, prompts, capacity)
