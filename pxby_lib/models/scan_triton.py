"""The 'triton' CUDA backend of the selective scan: the fused loop of scan_native.py on a GPU.

Same maths and shapes as `scan.selective_scan_reference`. One Triton program per (row b,
block of BLOCK_D channels) keeps its states h (BLOCK_D, N) in registers and walks the L
steps; nothing (B, L, ED, N)-sized is written. The forward also saves the state at the
start of every CHUNK steps (B, L / CHUNK, ED, N); the backward walks the chunks from the
last, recomputes a chunk's states from its saved start into a per-program scratch buffer
(CHUNK + 1 slices of (BLOCK_D, N), in L2), then runs the reverse-time loop over it.

Deterministic: no atomics. dB and dC are summed over a program's channels in registers and
written per channel block (B, n_blocks, L, N), dA per row (B, ED, N); both are summed
afterwards in a fixed order.

Needs the `triton` package (shipped with CUDA builds of torch; `pip install triton`).
The kernels run on the CPU under Triton's interpreter (TRITON_INTERPRET=1, set before
triton is imported): that is how tests/test_scan.py checks them on a machine without a
GPU; tests/test_cuda.py checks them on one.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except Exception:  # not installed, or a broken install: 'auto' falls back
    triton = None

CHUNK = 16  # steps between saved states: the backward recomputes at most CHUNK states
BLOCK_D = 16  # channels per program (with N 64: 1,024 states per program in registers)


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def available() -> bool:
    """Whether the kernels can run: triton importable, and a GPU (or the interpreter)."""
    return triton is not None and (torch.cuda.is_available() or interpreted())


if triton is not None:
    # plain functions here, jitted on first use (`_kernels`): triton.jit decides at
    # decoration whether to compile or interpret (TRITON_INTERPRET), so tests can choose

    def _forward_kernel(u, delta, A, Bm, Cm, D, y, h_last, h_starts, L, ED, N,
                        CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                        SAVE_LAST: tl.constexpr, SAVE_STARTS: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
        n = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
        md, mn = d < ED, n < N
        m2 = md[:, None] & mn[None, :]
        dn = d[:, None] * N + n[None, :]  # (BLOCK_D, BLOCK_N) offsets in (ED, N)
        a = tl.load(A + dn, mask=m2, other=0.0)
        d_skip = tl.load(D + d, mask=md, other=0.0)
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        n_chunks = tl.cdiv(L, CHUNK)
        for t in range(0, L):
            if SAVE_STARTS:
                if t % CHUNK == 0:
                    tl.store(h_starts + ((b * n_chunks + t // CHUNK) * ED) * N + dn, h, mask=m2)
            i = (b * L + t) * ED + d
            dt = tl.load(delta + i, mask=md, other=0.0)
            ut = tl.load(u + i, mask=md, other=0.0)
            bl = tl.load(Bm + (b * L + t) * N + n, mask=mn, other=0.0)
            cl = tl.load(Cm + (b * L + t) * N + n, mask=mn, other=0.0)
            h = tl.exp(dt[:, None] * a) * h + (dt * ut)[:, None] * bl[None, :]
            tl.store(y + i, tl.sum(h * cl[None, :], 1) + d_skip * ut, mask=md)
        if SAVE_LAST:
            tl.store(h_last + (b * ED) * N + dn, h, mask=m2)

    def _backward_kernel(u, delta, A, Bm, Cm, D, dy, h_starts, scratch, du, ddelta, dA_rows,
                         dB_parts, dC_parts, L, ED, N, CHUNK: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        b = tl.program_id(0)
        pd = tl.program_id(1)
        n_blocks = tl.num_programs(1)
        d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, BLOCK_N)
        md, mn = d < ED, n < N
        m2 = md[:, None] & mn[None, :]
        dn = d[:, None] * N + n[None, :]
        tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]  # offsets in a scratch slice
        own = scratch + (b * n_blocks + pd) * (CHUNK + 1) * BLOCK_D * BLOCK_N  # this program's
        a = tl.load(A + dn, mask=m2, other=0.0)
        d_skip = tl.load(D + d, mask=md, other=0.0)
        dh = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # dL/dh, carried back in time
        g_a = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # dA of this row
        n_chunks = tl.cdiv(L, CHUNK)
        for cc in range(0, n_chunks):
            c = n_chunks - 1 - cc
            # the chunk's states again: slot 0 its start, slot k + 1 the state after step k
            h = tl.load(h_starts + ((b * n_chunks + c) * ED) * N + dn, mask=m2, other=0.0)
            tl.store(own + tile, h)
            for k in range(0, CHUNK):
                t = c * CHUNK + k
                # past the end: delta = 0 keeps h, nothing is read
                ml = md & ((tl.zeros((BLOCK_D,), dtype=tl.int32) + t) < L)
                ml_n = mn & ((tl.zeros((BLOCK_N,), dtype=tl.int32) + t) < L)
                i = (b * L + t) * ED + d
                dt = tl.load(delta + i, mask=ml, other=0.0)
                ut = tl.load(u + i, mask=ml, other=0.0)
                bl = tl.load(Bm + (b * L + t) * N + n, mask=ml_n, other=0.0)
                h = tl.exp(dt[:, None] * a) * h + (dt * ut)[:, None] * bl[None, :]
                tl.store(own + (k + 1) * BLOCK_D * BLOCK_N + tile, h)
            tl.debug_barrier()
            for kk in range(0, CHUNK):
                k = CHUNK - 1 - kk
                t = c * CHUNK + k
                if t < L:
                    i = (b * L + t) * ED + d
                    dt = tl.load(delta + i, mask=md, other=0.0)
                    ut = tl.load(u + i, mask=md, other=0.0)
                    dyt = tl.load(dy + i, mask=md, other=0.0)
                    bl = tl.load(Bm + (b * L + t) * N + n, mask=mn, other=0.0)
                    cl = tl.load(Cm + (b * L + t) * N + n, mask=mn, other=0.0)
                    h = tl.load(own + (k + 1) * BLOCK_D * BLOCK_N + tile)
                    prev = tl.load(own + k * BLOCK_D * BLOCK_N + tile)
                    decay = tl.exp(dt[:, None] * a)
                    dh = dh + dyt[:, None] * cl[None, :]  # dL/dh_t
                    g = dh * decay * prev  # dL/d(delta_t A)
                    g_a += g * dt[:, None]
                    s = tl.sum(dh * bl[None, :], 1)  # dL/d(delta_t u_t)
                    tl.store(ddelta + i, tl.sum(g * a, 1) + s * ut, mask=md)
                    tl.store(du + i, s * dt + dyt * d_skip, mask=md)
                    part = ((b * n_blocks + pd) * L + t) * N + n
                    tl.store(dC_parts + part, tl.sum(dyt[:, None] * h, 0), mask=mn)
                    tl.store(dB_parts + part, tl.sum(dh * (dt * ut)[:, None], 0), mask=mn)
                    dh = dh * decay
            tl.debug_barrier()
        tl.store(dA_rows + (b * ED) * N + dn, g_a, mask=m2)


_jitted: dict[bool, tuple] = {}  # interpreted? -> (forward kernel, backward kernel)


def _kernels() -> tuple:
    if interpreted() not in _jitted:
        _jitted[interpreted()] = (triton.jit(_forward_kernel), triton.jit(_backward_kernel))
    return _jitted[interpreted()]


def _prepare(u, delta, A, B, C, D):
    if triton is None:
        raise RuntimeError("selective_scan: the 'triton' backend needs the `triton` package")
    if any(t.dtype != torch.float32 for t in (u, delta, A, B, C, D)):
        raise ValueError("selective_scan: the 'triton' backend runs in float32, got "
                         f"{[str(t.dtype) for t in (u, delta, A, B, C, D)]}")
    return tuple(t.detach().contiguous() for t in (u, delta, A, B, C, D))


def _sizes(u: Tensor, A: Tensor):
    b, length, ed = u.shape
    n = A.shape[1]
    return b, length, ed, n, triton.cdiv(ed, BLOCK_D), triton.next_power_of_2(n)


def _forward(u, delta, A, B, C, D, return_last_state: bool, keep_starts: bool):
    b, length, ed, n, n_blocks, block_n = _sizes(u, A)
    y = torch.empty_like(u)
    last = u.new_empty(b, ed, n) if return_last_state else u.new_empty(1)
    starts = (u.new_empty(b, triton.cdiv(length, CHUNK), ed, n) if keep_starts
              else u.new_empty(1))
    _kernels()[0][(b, n_blocks)](u, delta, A, B, C, D, y, last, starts, length, ed, n,
                                 CHUNK=CHUNK, BLOCK_D=BLOCK_D, BLOCK_N=block_n,
                                 SAVE_LAST=return_last_state, SAVE_STARTS=keep_starts)
    return y, last, starts


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
            return_last_state: bool = False):
    """y (B, L, ED) [and h_L (B, ED, N)], no graph."""
    y, last, _ = _forward(*_prepare(u, delta, A, B, C, D), return_last_state, False)
    return (y, last) if return_last_state else y


def backward(u, delta, A, B, C, D, starts, dy):
    """The gradients (du, d delta, dA, dB, dC, dD) of sum(y * dy), from the saved starts."""
    b, length, ed, n, n_blocks, block_n = _sizes(u, A)
    dy = dy.contiguous()
    scratch = u.new_empty(b, n_blocks, CHUNK + 1, BLOCK_D, block_n)
    d_u, d_delta = torch.empty_like(u), torch.empty_like(u)
    d_a_rows = u.new_empty(b, ed, n)
    d_b_parts, d_c_parts = (u.new_empty(b, n_blocks, length, n) for _ in range(2))
    _kernels()[1][(b, n_blocks)](u, delta, A, B, C, D, dy, starts, scratch, d_u, d_delta,
                                    d_a_rows, d_b_parts, d_c_parts, length, ed, n,
                                    CHUNK=CHUNK, BLOCK_D=BLOCK_D, BLOCK_N=block_n)
    d_d = (dy * u).sum((0, 1))
    return d_u, d_delta, d_a_rows.sum(0), d_b_parts.sum(1), d_c_parts.sum(1), d_d


class ScanFn(torch.autograd.Function):
    """The Triton scan under autograd: saves its inputs and the chunk start states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):
        inputs = _prepare(u, delta, A, B, C, D)
        y, _, starts = _forward(*inputs, False, True)
        ctx.save_for_backward(*inputs, starts)
        return y

    @staticmethod
    def backward(ctx, dy):
        return backward(*ctx.saved_tensors, dy)
