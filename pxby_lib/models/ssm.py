"""SSM family ("bMamba", spec section 8): Mamba-1 blocks, bidirectional first layer.

MambaBlock is the standard Mamba-1 mixer (state-spaces/mamba `Mamba`, mamba-minimal,
mamba.py `MambaBlock`) WITHOUT the residual wrapper and its RMSNorm:
  in_proj Linear(D, 2 ED, bias=False) -> (x, z)
  x: depthwise causal Conv1d(ED, ED, d_conv, padding d_conv - 1, bias=True) -> SiLU
     -> selective SSM (x_proj Linear(ED, dt_rank + 2N, bias=False) gives delta, B, C;
        delta = softplus(dt_proj(delta)), dt_proj Linear(dt_rank, ED, bias=True);
        A = -exp(A_log), A_log (ED, N) S4D-real init log(1..N); D (ED,) ones)
  y * SiLU(z) -> out_proj Linear(ED, D, bias=False)
with ED = expand * D, expand 2, d_conv 4, N = d_state, dt_rank = ceil(D / 16). This
bare block is what reproduces the spec's 91,431 parameters for SSM Bi D=81 depth 1
(an RMSNorm or a residual norm per block would add D weights each).

SSMModel: embedding -> first layer -> further blocks stacked with no residual and no
norm -> Linear(D, vocab, bias=False) on the last position. Bidirectional first layer
with SHARED weights: LayerNorm(M(x) + flip(M(flip(x)))); unidirectional: M(x), no norm.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import NextTokenModel
from .embed import build_embedding
from .scan import selective_scan, selective_scan_reference, selective_scan_with_state
from .stepper import EmbeddedStepper

if TYPE_CHECKING:
    from . import ModelConfig


class MambaBlock(nn.Module):
    """Mamba-1 mixer: (B, L, D) -> (B, L, D). Parameters named as in mamba_ssm."""

    def __init__(self, d_model: int, d_state: int = 64, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_inner = expand * d_model  # ED
        self.d_state = d_state  # N
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # standard dt init: weight U(-r^-0.5, r^-0.5); bias = softplus^-1(dt),
        # dt log-uniform in [dt_min, dt_max], floored at dt_init_floor
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real init: A = -(1, 2, ..., N) for every channel
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))  # (ED, N)
        self.D = nn.Parameter(torch.ones(self.d_inner))  # (ED,)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.scan_backend: str | None = None  # None: selective_scan's 'auto'; or 'reference'

    # Two paths, side by side (as in mamba-minimal / mamba.py) and tested equal
    # (tests/test_models.py, tests/test_incremental.py): the parallel one over a whole
    # sequence (forward, mix, ssm) and the sequential one, a position at a time (step),
    # which generation continues from the state the parallel path returns. The state
    # after t positions: the conv state, the last K - 1 pre-conv inputs (B, ED, K-1),
    # zeros before the first; and the scan state h_t (B, ED, N).

    def forward(self, x: Tensor) -> Tensor:
        return self.mix(self.in_proj(x))  # (B, L, D)

    def mix(self, xz: Tensor, return_state: bool = False):
        """The block after its in_proj (pointwise, so callers may cache it): xz (B, L, 2 ED)
        -> (B, L, D); with return_state, also the state after the L positions."""
        length = xz.shape[1]
        x, z = xz.chunk(2, dim=-1)  # (B, L, ED) each
        x = x.transpose(1, 2)  # (B, ED, L)
        y = self.ssm(F.silu(self.conv1d(x)[..., :length].transpose(1, 2)), return_state)  # causal
        if not return_state:
            return self.out_proj(y * F.silu(z))  # (B, L, D)
        y, h = y
        k = self.conv1d.kernel_size[0]
        conv_state = F.pad(x, (k - 1, 0))[..., -(k - 1) :]  # (B, ED, K-1)
        return self.out_proj(y * F.silu(z)), conv_state, h  # (B, L, D), (B, ED, K-1), (B, ED, N)

    def ssm(self, x: Tensor, return_state: bool = False):
        """Selective SSM on x (B, L, ED) -> y (B, L, ED) [, h_L (B, ED, N) if return_state]."""
        A = -torch.exp(self.A_log.float())  # (ED, N)
        delta, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta))  # (B, L, ED)
        if self.scan_backend == "reference":
            return selective_scan_reference(x, delta, A, B, C, self.D, return_state)
        if return_state:
            return selective_scan_with_state(x, delta, A, B, C, self.D, backend=self.scan_backend)
        return selective_scan(x, delta, A, B, C, self.D, backend=self.scan_backend)

    def step(self, x_t: Tensor, conv_state: Tensor | None = None, h: Tensor | None = None):
        """One position x_t (B, D) after the state (conv_state, h) (None: the zero state, i.e.
        the first position): y_t (B, D) and the state after it."""
        x, z = self.in_proj(x_t).chunk(2, dim=-1)  # (B, ED) each
        if conv_state is None:
            conv_state = x.new_zeros(*x.shape, self.conv1d.kernel_size[0] - 1)  # (B, ED, K-1)
        conv_in = torch.cat([conv_state, x[..., None]], -1)  # (B, ED, K)
        x = F.silu((conv_in * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)  # (B, ED)
        delta, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta))  # (B, ED)
        drive = (delta * x)[..., None] * B[:, None, :]  # (B, ED, N)
        if h is None:
            h = drive  # exp(delta A) * 0 + drive
        else:
            A = -torch.exp(self.A_log.float())  # (ED, N)
            h = torch.addcmul(drive, torch.exp(delta[..., None] * A), h)  # (B, ED, N)
        y = (h @ C[..., None])[..., 0] + x * self.D  # (B, ED)
        return self.out_proj(y * F.silu(z)), conv_in[..., 1:], h  # (B, D), new state


class SSMModel(NextTokenModel):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = build_embedding(config.embedding, d, config.vocab_size, config.conv)
        self.layers = nn.ModuleList(MambaBlock(d, config.d_state) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d) if config.bidirectional else None
        self.head = nn.Linear(d, config.vocab_size, bias=False)

    def set_scan_backend(self, backend: str | None) -> None:
        """None ('auto'), 'eager', 'compiled', 'cuda', or 'reference' (the slow ground truth)."""
        for layer in self.layers:
            layer.scan_backend = backend

    @property
    def causal(self) -> bool:
        return not self.config.bidirectional

    def encode(self, x: Tensor) -> Tensor:
        h = self.embed(x)  # (B, L, D)
        first = self.layers[0]
        if self.norm is not None:
            # the same block reads both directions: run them as ONE batch of 2B sequences
            both = first(torch.cat([h, h.flip(1)]))  # (2B, L, D)
            forward_dir, backward_dir = both.chunk(2)
            h = self.norm(forward_dir + backward_dir.flip(1))
        else:
            h = first(h)
        for layer in self.layers[1:]:
            h = layer(h)  # no residual, no norm
        return h  # (B, L, D)

    def stepper(self, prompts: Tensor, capacity: int) -> SSMStepper:
        """The sequential path of generation: see `SSMStepper` (tests/test_incremental.py)."""
        return SSMStepper(self, prompts, capacity)


# ---- the sequential path of the whole model: one appended window at a time --------------


# A Mamba block's state (conv state and scan state h) comes from its parallel path over
# the prompt (`MambaBlock.mix(xz, return_state=True)`, the fast scan returning h_P), and
# each appended window advances it with the block's sequential path (`MambaBlock.step`).


class SSMStepper(EmbeddedStepper):
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
            h, conv_state, state = block.mix(xz, return_state=True)  # (B, P, D), the state
            self.states.append((conv_state, state))
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
            h, conv_state, state = block.step(h, *self.states[i])  # (B, D), the new state
            self.states[i] = (conv_state, state)
        self.last = h
        if self.bidirectional and len(self.model.layers) > 1:
            self.forward_out[:, self.n] = h
            self.in_proj[:, self.n] = self.model.layers[0].in_proj(new[:, 0])
