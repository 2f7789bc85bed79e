"""Selective scan of Mamba-1: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t h_t + D u_t.

Shapes everywhere: u, delta (B, L, ED); A (ED, N); B, C (B, L, N); D (ED,) -> y (B, L, ED).

- `selective_scan_reference`: a plain sequential loop under autograd (ground truth, slow:
  autograd keeps several (B, ED, N) tensors per step).
- `selective_scan`: the fast path, same maths, through one of these backends:
    'native'   (CPU) the fused C++ loop of scan_native.py / csrc/selective_scan.cpp: one
               (row, channel) pair at a time with its state in registers, the backward
               recomputing that pair's states in cache. Nothing (B, L, ED, N)-sized is
               materialised. Built on first use (~1 s, cached); the default on the CPU.
    'eager'    the segmented path below in pure PyTorch (always available).
    'compiled' the segmented path with `torch.compile`-fused segment kernels (~20 s to
               compile once per process); 'auto' uses it on the CPU only where 'native'
               cannot be built (no C++ compiler), for large scans.
    'triton'   (CUDA) the fused loop as a Triton kernel (scan_triton.py).
    'cuda'     `mamba_ssm`'s fused kernel, only when the inputs are on CUDA and the
               package is importable (optional, never required; untested here).
  The segmented path (`SelectiveScanFn`) runs the time loop without building a graph,
  one segment of T steps at a time on blocks of batch rows laid out time-major; only the
  states at segment starts are kept, and the hand-written backward recomputes each
  segment's states from them and runs the reverse-time loop. It keeps several
  (T, rows, ED, N) buffers per segment: 2-3x slower than 'native' on the CPU.
  'auto' (the default, or $PXBY_SCAN_BACKEND) picks 'cuda', else 'triton', on CUDA, and
  'native' on the CPU; where those cannot run it warns once and takes the segmented path
  ('compiled' for large CPU scans, >= COMPILE_MIN_ELEMENTS state elements, else 'eager').

Longer than the other modules because the reference loop, the segmented fast path with its
hand-written backward, and the backend choice stay side by side in one file, where the
tests that hold them equal (tests/test_scan.py) can be read against them; the fused
kernels live in scan_native.py (CPU) and scan_triton.py (CUDA).
"""

from __future__ import annotations

import os
import types
import warnings

import torch
from torch import Tensor

from . import scan_native, scan_triton

BACKENDS = ("auto", "native", "eager", "compiled", "triton", "cuda")
FUSED = {"native": scan_native, "triton": scan_triton}  # same interface: forward, ScanFn
COMPILE_MIN_ELEMENTS = 2**25  # B * L * ED * N from which 'auto' compiles (B 32, L 256: 85M)
# Steps per segment and batch rows per block, per backend: the backward's working set,
# ~9 (T, rows, ED, N) buffers, must stay in cache. Tuned on a 2-core AMD EPYC (1 MiB L2
# per core) at B 64, L 256, ED 162, N 64: 'compiled' is best with segment 4, about 8 rows
# per thread in the backward (16 on 2 threads) and up to 64 rows in the forward.
SEGMENT = {"eager": 8, "compiled": 4}
FORWARD_BLOCK = {"eager": 64, "compiled": 64}
ROWS_PER_THREAD = 8  # 'compiled' backward block = ROWS_PER_THREAD * torch threads


def default_block(backend: str) -> int:
    """Batch rows per block in the backward (the forward uses a multiple of it)."""
    return 64 if backend == "eager" else ROWS_PER_THREAD * torch.get_num_threads()


try:  # optional CUDA kernel; the pure-PyTorch paths below are the default
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_scan_fn
except Exception:  # ImportError, or a broken CUDA build
    _cuda_scan_fn = None


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan: u and delta must both be (B, L, ED), got "
                         f"{tuple(u.shape)} and {tuple(delta.shape)}")
    b, length, ed = u.shape
    if A.dim() != 2 or A.shape[0] != ed:
        raise ValueError(f"selective_scan: A must be (ED={ed}, N), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (b, length, n):
            raise ValueError(f"selective_scan: {name} must be (B, L, N) = {(b, length, n)}, "
                             f"got {tuple(t.shape)}")
    if D.shape != (ed,):
        raise ValueError(f"selective_scan: D must be (ED,) = ({ed},), got {tuple(D.shape)}")


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Tensor, return_last_state: bool = False):
    """Ground truth: one step at a time under autograd (slow; for tests and benchmarks).
    y (B, L, ED); with return_last_state, (y, h_L (B, ED, N))."""
    _check_shapes(u, delta, A, B, C, D)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])  # (B, ED, N)
    ys = []
    # unbind (not x[:, t]) so that the backward stacks the slices once instead of
    # scattering every step's gradient into a full-size zero tensor (quadratic)
    for u_t, delta_t, b_t, c_t in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):
        decay = torch.exp(delta_t.unsqueeze(-1) * A)  # (B, ED, N)
        h = decay * h + (delta_t * u_t).unsqueeze(-1) * b_t.unsqueeze(1)  # (B, ED, N)
        ys.append((h @ c_t.unsqueeze(-1)).squeeze(-1))  # (B, ED)
    y = torch.stack(ys, 1) + u * D  # (B, L, ED)
    return (y, h) if return_last_state else y


# ---- segment kernels --------------------------------------------------------------------
# Both flavours work on one time-major segment: u, delta, dy (T, B, ED); A (ED, N); B, C
# (T, B, N); D (ED,); h0 the state before the segment (B, ED, N); carry the gradient
# decay_{t+1} dh_{t+1} flowing back from the segment after (B, ED, N). They write their
# results into the given output slices (no copies) and return:
#   forward(h0, u, delta, A, B, C, D, y) -> last state; y (T, B, ED) gets C_t h_t + D u_t
#   backward(h0, carry, u, delta, A, B, C, D, dy, d_u, d_delta, d_b, d_c, d_a) -> carry
#     for the segment before; d_u, d_delta (T, B, ED), d_b, d_c (T, B, N) are written and
#     dA is added to d_a (ED, N)


def _unrolled_forward(h: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                      D: Tensor, y: Tensor) -> Tensor:
    """Step by step, written for torch.compile to fuse the T steps into one loop."""
    ys = []
    for t in range(delta.shape[0]):
        deltau = (delta[t] * u[t]).unsqueeze(-1)  # (B, ED, 1)
        h = torch.exp(delta[t].unsqueeze(-1) * A) * h + deltau * B[t].unsqueeze(1)
        ys.append((h * C[t].unsqueeze(1)).sum(-1) + D * u[t])  # (B, ED)
    y.copy_(torch.stack(ys))
    return h


def _unrolled_backward(h0: Tensor, carry: Tensor, u: Tensor, delta: Tensor, A: Tensor,
                       B: Tensor, C: Tensor, D: Tensor, dy: Tensor, d_u: Tensor,
                       d_delta: Tensor, d_b: Tensor, d_c: Tensor, d_a: Tensor) -> Tensor:
    """Reverse-time loop, written for torch.compile (recomputes the segment's states)."""
    hs, decays, h = [], [], h0
    deltau = delta * u  # (T, B, ED)
    for t in range(delta.shape[0]):
        decay = torch.exp(delta[t].unsqueeze(-1) * A)  # (B, ED, N)
        h = decay * h + deltau[t].unsqueeze(-1) * B[t].unsqueeze(1)
        decays.append(decay)
        hs.append(h)
    dh, g_delta = carry, 0
    d_us, d_deltas, d_bs, d_cs = [], [], [], []
    for t in reversed(range(delta.shape[0])):
        dy_t = dy[t].unsqueeze(-1)  # (B, ED, 1)
        d_cs.append((hs[t] * dy_t).sum(1))  # (B, N)
        dh = dh + dy_t * C[t].unsqueeze(1)  # (B, ED, N): dL/dh_t
        g = dh * decays[t] * (hs[t - 1] if t > 0 else h0)  # dL/d(delta_t A)
        # summed over time elementwise, over the batch once at the end: fuses better
        g_delta = g_delta + g * delta[t].unsqueeze(-1)
        d_bs.append((dh * deltau[t].unsqueeze(-1)).sum(1))  # (B, N)
        d_deltau = (dh * B[t].unsqueeze(1)).sum(-1)  # (B, ED)
        d_deltas.append((g * A).sum(-1) + d_deltau * u[t])
        d_us.append(d_deltau * delta[t] + dy[t] * D)
        dh = dh * decays[t]
    for out, parts in ((d_u, d_us), (d_delta, d_deltas), (d_b, d_bs), (d_c, d_cs)):
        out.copy_(torch.stack(parts[::-1]))
    d_a.add_(g_delta.sum(0))
    return dh


class _EagerChunks:
    """Segment kernels in plain PyTorch, in place in three preallocated (T, B, ED, N) buffers
    (fresh large tensors per segment cost page faults: 3x slower)."""

    def __init__(self, segment: int, like: Tensor, b: int, ed: int, n: int):
        self.decay, self.hs, self.work = (like.new_empty(segment, b, ed, n) for _ in range(3))

    def _states(self, h0: Tensor, deltau: Tensor, delta: Tensor, A: Tensor, B: Tensor):
        decay, hs = self.decay, self.hs
        torch.mul(delta.unsqueeze(-1), A, out=decay).exp_()  # (T, B, ED, N)
        torch.mul(deltau.unsqueeze(-1), B.unsqueeze(2), out=hs)  # delta_t B_t u_t, becomes h_t
        hs[0].addcmul_(decay[0], h0)
        for t in range(1, hs.shape[0]):
            hs[t].addcmul_(decay[t], hs[t - 1])  # h_t = decay_t h_{t-1} + delta_t B_t u_t
        return decay, hs

    def forward(self, h0, u, delta, A, B, C, D, y):
        _, hs = self._states(h0, delta * u, delta, A, B)
        torch.matmul(hs, C.unsqueeze(-1), out=y.unsqueeze(-1))  # (T, B, ED, 1)
        y.addcmul_(u, D)
        return hs[-1].clone()

    def backward(self, h0, carry, u, delta, A, B, C, D, dy, d_u, d_delta, d_b, d_c, d_a):
        deltau = delta * u
        decay, hs = self._states(h0, deltau, delta, A, B)
        torch.matmul(dy.unsqueeze(-2), hs, out=d_c.unsqueeze(-2))  # (T, B, 1, N)
        dh = torch.mul(dy.unsqueeze(-1), C.unsqueeze(2), out=self.work)  # (T, B, ED, N)
        dh[-1].add_(carry)
        for t in range(dh.shape[0] - 2, -1, -1):
            dh[t].addcmul_(decay[t + 1], dh[t + 1])  # dh_t = dy_t C_t + decay_{t+1} dh_{t+1}
        carry = decay[0] * dh[0]
        torch.matmul(deltau.unsqueeze(-2), dh, out=d_b.unsqueeze(-2))  # (T, B, 1, N)
        d_deltau = (dh @ B.unsqueeze(-1)).squeeze(-1)  # (T, B, ED)
        torch.addcmul(dy * D, d_deltau, delta, out=d_u)  # through delta u and D u
        g = decay.mul_(dh)  # dL/d(delta_t A) = dh_t decay_t h_{t-1}, in the decay buffer
        g[1:].mul_(hs[:-1])
        g[0].mul_(h0)
        torch.sum(torch.mul(g, A, out=hs), -1, out=d_delta)  # hs is no longer needed
        d_delta.addcmul_(d_deltau, u)
        d_a.add_(torch.mul(g, delta.unsqueeze(-1), out=hs).sum((0, 1)))
        return carry


class _CompiledChunks:
    """The unrolled kernels through torch.compile (compiled once per process, lazily)."""

    forward_fn = None
    backward_fn = None

    def __init__(self, segment: int, like: Tensor, b: int, ed: int, n: int):
        if _CompiledChunks.forward_fn is None:
            # static shapes: the blocks have fixed shapes, and a dynamic kernel is ~2x slower
            _CompiledChunks.forward_fn = torch.compile(_unrolled_forward, fullgraph=True,
                                                       dynamic=False)
            _CompiledChunks.backward_fn = torch.compile(_unrolled_backward, fullgraph=True,
                                                        dynamic=False)

    def forward(self, *args):
        return _CompiledChunks.forward_fn(*args)

    def backward(self, *args):
        return _CompiledChunks.backward_fn(*args)


_KERNELS = {"eager": _EagerChunks, "compiled": _CompiledChunks}
_compile_failed = False  # set once torch.compile has failed: 'auto' stops trying


def _to_blocks(x: Tensor, block: int, padded_length: int) -> Tensor:
    """(B, L, K) -> (B_pad / block, L_pad, block, K) contiguous, zero-padded at the ends.

    Each block of rows is time-major, so that a step's slice is one contiguous piece and
    every block has the same shape and strides whatever B is (one compiled kernel serves
    all batch sizes). Zero padding is exact: delta = 0 and B = 0 leave the state
    unchanged, C = 0 gives y = 0, dy = 0 sends no gradient; padded rows and steps are
    dropped afterwards.
    """
    b, length, k = x.shape
    full, rest = divmod(b, block)
    out = x.new_empty(full + (rest > 0), padded_length, block, k)
    if padded_length > length:
        out[:, length:].zero_()
    # one copy straight into the blocked layout
    out[:full, :length].copy_(x[: full * block].view(full, block, length, k).transpose(1, 2))
    if rest:
        out[full, :length, :rest].copy_(x[full * block:].transpose(0, 1))
        out[full, :, rest:].zero_()
    return out


def _from_blocks(x: Tensor, b: int, length: int) -> Tensor:
    """(B_pad / block, L_pad, block, K) -> (B, L, K), dropping the padding."""
    if x.shape[0] == 1:  # a view
        return x[0, :length, :b].transpose(0, 1)
    n_blocks, padded_length, block, k = x.shape
    return x.transpose(1, 2).reshape(n_blocks * block, padded_length, k)[:b, :length]


def _scan_forward(backend: str, segment: int, keep_states: bool, u_bl: Tensor, delta_bl: Tensor,
                  A: Tensor, b_bl: Tensor, c_bl: Tensor, D: Tensor):
    """Blocked inputs (see _to_blocks) -> y (n_blocks, L_pad, block, ED), (if keep_states)
    the segment start states starts[block][segment], each (block, ED, N): all the backward needs,
    and the final states (n_blocks * block, ED, N) (zero-padded steps leave them unchanged)."""
    n_blocks, padded, block, ed = u_bl.shape
    kernels = _KERNELS[backend](segment, u_bl, block, ed, A.shape[1])
    y = torch.empty_like(u_bl)
    starts, last = [], []
    for i in range(n_blocks):
        h = u_bl.new_zeros(block, ed, A.shape[1])  # (block, ED, N)
        starts.append([])
        # per-segment views made once (slicing in the loop costs as much as a small kernel)
        segments = [x[i].split(segment) for x in (u_bl, delta_bl, b_bl, c_bl, y)]
        for u, delta, b_c, c_c, y_c in zip(*segments):
            if keep_states:
                starts[i].append(h)
            h = kernels.forward(h, u, delta, A, b_c, c_c, D, y_c)
        last.append(h)
    return y, starts, torch.cat(last)


def _scan_backward(backend: str, segment: int, rows: int, starts: list[list[Tensor]],
                   u_bl: Tensor, delta_bl: Tensor, A: Tensor, b_bl: Tensor, c_bl: Tensor,
                   D: Tensor, dy_bl: Tensor):
    """Reverse loop over the segments -> du, d delta, dA, dB, dC.

    Runs on sub-blocks of `rows` rows of the forward's blocks (a smaller working set);
    their start states are row slices of the forward's.
    """
    n_blocks, padded, block, ed = u_bl.shape
    kernels = _KERNELS[backend](segment, u_bl, rows, ed, A.shape[1])
    d_u, d_delta = torch.empty_like(u_bl), torch.empty_like(delta_bl)
    d_b, d_c = torch.empty_like(b_bl), torch.empty_like(c_bl)
    d_a = torch.zeros_like(A)
    for i in range(n_blocks):
        for r0 in range(0, block, rows):
            r = slice(r0, r0 + rows)
            carry = u_bl.new_zeros(rows, ed, A.shape[1])  # nothing flows in after the end
            # per-segment views made once (slicing in the loop costs as much as a small kernel)
            ins = [x[i, :, r].split(segment) for x in (u_bl, delta_bl, b_bl, c_bl, dy_bl)]
            outs = [x[i, :, r].split(segment) for x in (d_u, d_delta, d_b, d_c)]
            for k in reversed(range(len(starts[i]))):
                u, delta, b_c, c_c, dy = (x[k] for x in ins)
                carry = kernels.backward(starts[i][k][r], carry, u, delta, A, b_c, c_c, D, dy,
                                         *(x[k] for x in outs), d_a)
    return d_u, d_delta, d_a, d_b, d_c


def _with_fallback(ctx, run, *args):
    """Run `run(backend, ...)`; if 'auto' chose 'compiled' and compiling fails, use 'eager'."""
    global _compile_failed
    if not (ctx.backend == "compiled" and ctx.fallback):
        return run(ctx.backend, *args)
    try:
        return run("compiled", *args)
    except Exception as err:  # no C++ compiler, unsupported platform, recompile limit...
        _compile_failed = True
        ctx.backend = "eager"
        warnings.warn(f"selective_scan: torch.compile failed ({type(err).__name__}: {err}); "
                      "using the eager backend from now on", stacklevel=3)
        return run("eager", *args)


def _blocked_forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                     D: Tensor, segment: int | None, block: int | None, keep_states: bool):
    """The forward of SelectiveScanFn and selective_scan_with_state: lay the rows out in
    blocks, scan, and return (blocked inputs, y (B, L, ED), segment start states, final
    states (B, ED, N)). Sets ctx.segment and ctx.rows (ctx.backend may fall back to eager)."""
    b, length, _ = u.shape
    segment = segment or SEGMENT[ctx.backend]
    rows = block or default_block(ctx.backend)
    if ctx.backend == "eager":  # no compiled shapes to keep fixed: no padding rows
        rows = min(rows, b)
        forward_block = rows * max(1, min(FORWARD_BLOCK[ctx.backend], b) // rows)
    else:  # fixed shapes (a static kernel for all batch sizes), but small B not padded far
        forward_block = rows * max(1, min(FORWARD_BLOCK[ctx.backend] // rows, -(-b // rows)))
    padded = -(-length // segment) * segment
    blocked = tuple(_to_blocks(x, forward_block, padded) for x in (u, delta, B, C))
    ctx.segment, ctx.rows = segment, rows
    u_bl, delta_bl, b_bl, c_bl = blocked
    y, starts, last = _with_fallback(ctx, _scan_forward, segment, keep_states, u_bl, delta_bl,
                                     A, b_bl, c_bl, D)
    return blocked, _from_blocks(y, b, length), starts, last[:b]


class SelectiveScanFn(torch.autograd.Function):
    """Chunked, graph-free selective scan with a hand-written backward.

    backend: 'eager' or 'compiled'; segment: steps per segment; block: batch rows per block
    in the backward (the scan runs block by block so that its working set stays in
    cache; the forward uses a whole number of these blocks); fallback: go on with
    'eager' if compiling fails; keep_states: False when no backward will run.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                backend: str = "eager", segment: int | None = None, block: int | None = None,
                fallback: bool = False, keep_states: bool = True) -> Tensor:
        ctx.backend, ctx.fallback = backend, fallback
        blocked, y, starts, _ = _blocked_forward(ctx, u, delta, A, B, C, D, segment, block,
                                                 keep_states)
        # saved (not kept on ctx) so that autograd frees the states right after the backward
        ctx.n_blocks = len(starts)
        u_bl, delta_bl, b_bl, c_bl = blocked
        ctx.save_for_backward(u_bl, delta_bl, A, b_bl, c_bl, D,
                              *(h for row in starts for h in row))
        return y  # (B, L, ED)

    @staticmethod
    def backward(ctx, dy: Tensor):
        u_bl, delta_bl, A, b_bl, c_bl, D, *flat = ctx.saved_tensors
        per_block = len(flat) // ctx.n_blocks
        starts = [flat[i * per_block:(i + 1) * per_block] for i in range(ctx.n_blocks)]
        b, length, _ = dy.shape
        dy_bl = _to_blocks(dy, u_bl.shape[2], u_bl.shape[1])
        d_u, d_delta, d_a, d_b, d_c = _with_fallback(
            ctx, _scan_backward, ctx.segment, ctx.rows, starts, u_bl, delta_bl, A, b_bl, c_bl, D,
            dy_bl)
        d_d = (dy_bl * u_bl).sum((0, 1, 2))
        d_u, d_delta, d_b, d_c = (_from_blocks(x, b, length) for x in (d_u, d_delta, d_b, d_c))
        return d_u, d_delta, d_a, d_b, d_c, d_d, None, None, None, None, None


_fallback_warned: set[str] = set()  # fused backends already reported unavailable


def _fused_unavailable(backend: str, reason: str | None) -> None:
    """One line, once per process, when 'auto' cannot use a fused backend."""
    if backend not in _fallback_warned:
        _fallback_warned.add(backend)
        warnings.warn(f"selective_scan: the {backend!r} scan cannot run here ({reason}); "
                      "using the slower segmented PyTorch scan", stacklevel=4)


def pick_backend(u: Tensor, n_state: int, backend: str | None = None) -> str:
    """Resolve 'auto' (or $PXBY_SCAN_BACKEND) to the backend that `selective_scan` runs."""
    backend = backend or os.environ.get("PXBY_SCAN_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: backend {backend!r} is not one of {BACKENDS} "
                         "(check the argument or $PXBY_SCAN_BACKEND)")
    if backend == "cuda" and (_cuda_scan_fn is None or not u.is_cuda):
        raise ValueError("selective_scan: backend 'cuda' needs CUDA inputs and the "
                         "`mamba_ssm` package; use 'auto' to fall back to PyTorch")
    if backend == "native" and not (u.device.type == "cpu" and scan_native.available()):
        raise ValueError("selective_scan: backend 'native' needs CPU inputs and a C++ compiler "
                         f"({scan_native.unavailable_reason() or u.device}); use 'auto'")
    if backend == "triton" and not (u.is_cuda and scan_triton.available()):
        raise ValueError("selective_scan: backend 'triton' needs CUDA inputs and the `triton` "
                         "package; use 'auto'")
    if backend != "auto":
        return backend
    if u.is_cuda:
        if _cuda_scan_fn is not None:
            return "cuda"
        if scan_triton.available() and u.dtype == torch.float32:
            return "triton"
        if u.dtype == torch.float32:  # other dtypes: the segmented path, as before
            _fused_unavailable("triton", "the `triton` package is not importable")
        return "eager"
    if u.device.type == "cpu":
        if scan_native.available():
            return "native"
        _fused_unavailable("native", scan_native.unavailable_reason())
        if not _compile_failed and u.numel() * n_state >= COMPILE_MIN_ELEMENTS:
            return "compiled"
    return "eager"


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   backend: str | None = None, segment: int | None = None,
                   block: int | None = None) -> Tensor:
    """Fast selective scan, same maths as `selective_scan_reference`. (B, L, ED) -> (B, L, ED).

    backend: 'auto' (default, or $PXBY_SCAN_BACKEND), 'native', 'eager', 'compiled',
    'triton' or 'cuda' (see the module docstring); segment and block tune the segmented
    backends. All backends take the same parameters: one state dict for all.
    """
    _check_shapes(u, delta, A, B, C, D)
    chosen = pick_backend(u, A.shape[1], backend)
    if chosen == "cuda":  # not testable on the CPU development machine
        y = _cuda_scan_fn(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                          C.transpose(1, 2), D, delta_softplus=False)  # (B, ED, L)
        return y.transpose(1, 2)
    # no graph (inference, evaluation): no states kept for a backward
    keep_states = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C, D))
    if chosen in FUSED:
        fused = FUSED[chosen]
        return fused.ScanFn.apply(u, delta, A, B, C, D) if keep_states else fused.forward(
            u, delta, A, B, C, D)
    fallback = backend in (None, "auto") and chosen == "compiled"
    return SelectiveScanFn.apply(u, delta, A, B, C, D, chosen, segment, block, fallback,
                                 keep_states)


@torch.no_grad()
def selective_scan_with_state(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                              D: Tensor, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """Inference only: y (B, L, ED) as `selective_scan`, and the state after the last step
    h_L (B, ED, N), from which a step-by-step recurrence continues (generation; mamba_ssm's
    return_last_state=True)."""
    _check_shapes(u, delta, A, B, C, D)
    chosen = pick_backend(u, A.shape[1], backend)
    if chosen == "cuda":
        y, last = _cuda_scan_fn(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                                C.transpose(1, 2), D, delta_softplus=False,
                                return_last_state=True)  # (B, ED, L), (B, ED, N)
        return y.transpose(1, 2), last
    if chosen in FUSED:
        return FUSED[chosen].forward(u, delta, A, B, C, D, return_last_state=True)
    ctx = types.SimpleNamespace(backend=chosen, fallback=backend in (None, "auto")
                                and chosen == "compiled")
    _, y, _, last = _blocked_forward(ctx, u, delta, A, B, C, D, None, None, keep_states=False)
    return y, last
