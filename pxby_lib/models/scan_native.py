"""The 'native' CPU backend of the selective scan: a fused C++ loop (csrc/selective_scan.cpp).

Same maths and shapes as `scan.selective_scan_reference`. One (row, channel) pair is scanned
at a time with its state h (N floats) in registers; the backward recomputes that pair's
states into an (L, N) buffer that stays in cache and runs the reverse-time loop, so
nothing (B, L, ED, N)-sized is ever materialised (the segmented backends keep several
(T, rows, ED, N) buffers per segment: 2-3x slower, 2x the peak memory of a training step).

Built on first use with the system's C++ compiler ($CXX, else c++ / g++; conda: the
`cxx-compiler` package) into a per-user cache ($PXBY_CACHE_DIR, else
~/.cache/pxby_lib): about half a second, once per source version, compiler and machine. Loaded with
ctypes (no Python headers, no torch headers: nothing to match against torch's build).
`available()` says whether it can run; `scan.pick_backend` falls back to the segmented
path with a one-line warning where it cannot.

Threads: the batch rows are split over `torch.get_num_threads()` Python threads (ctypes
releases the GIL during the call). The bytes do not depend on the thread count: every
output is written by one call in a fixed order, and dA comes back per row and is summed
here in a fixed order.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("csrc") / "selective_scan.cpp"
# -fopenmp-simd: honour `omp simd` (vectorised loops and reductions) without linking an
# OpenMP runtime; -fno-trapping-math: lets gcc turn exp_vec's clamps into vector selects
# (without it the AVX2 build leaves the loops scalar, 4x slower; results are unchanged);
# the instruction set comes from `isa_flags`
FLAGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared",
         "-std=c++17"]
DTYPES = {torch.float32: 0, torch.float64: 1}

_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the library cannot be built or loaded (once known)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def cache_dir() -> Path:
    base = os.environ.get("PXBY_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pxby_lib"
    return Path(base)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model and flags (Linux), else the platform."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def isa_flags() -> list[str]:
    """The vector instruction set. Pinned numerics (pxby_lib/runtime.py): AVX2 + FMA, the
    cap the other CPU libraries get, wherever the CPU has them (256-bit vectors: the same
    reduction order on an AVX-512 machine); otherwise, or with PXBY_NUMERICS=native, the
    build machine's own (-march=native)."""
    from ..runtime import numerics_pinned

    if numerics_pinned() and platform.machine() in ("x86_64", "AMD64"):
        flags = _cpu_id().split()
        if "avx2" in flags and "fma" in flags:
            return ["-mavx2", "-mfma"]
    return ["-march=native"]


def build(force: bool = False) -> Path:
    """Compile the kernel into the cache (atomically: temp file + rename); return its path."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set $CXX, or install g++; conda: "
                           "`conda install -c conda-forge cxx-compiler`)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    flags = FLAGS + isa_flags()
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(flags), version, _cpu_id()])
                         .encode()).hexdigest()[:16]
    target = cache_dir() / f"selective_scan-{key}.so"
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        out = subprocess.run([compiler, *flags, str(SOURCE), "-o", tmp], capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {out.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> ctypes.CDLL:
    global _lib, _error
    if _lib is None:
        if _error is not None:
            raise RuntimeError(_error)
        try:
            lib = ctypes.CDLL(str(build()))
        except Exception as err:  # no compiler, compile error, unloadable library
            _error = f"{type(err).__name__}: {err}"
            raise RuntimeError(_error) from err
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.pxby_scan_forward.argtypes = [ctypes.c_int] + [ptr] * 8 + [i64] * 5
        lib.pxby_scan_backward.argtypes = [ctypes.c_int] + [ptr] * 12 + [i64] * 5
        lib.pxby_scan_forward.restype = lib.pxby_scan_backward.restype = None
        _lib = lib
    return _lib


def available() -> bool:
    """Whether the native kernel builds and loads here (builds it on the first call)."""
    try:
        _load()
    except RuntimeError:
        return False
    return True


def unavailable_reason() -> str | None:
    return None if available() else _error


def _row_ranges(b: int) -> list[tuple[int, int]]:
    threads = max(1, min(torch.get_num_threads(), b))
    bounds = [b * k // threads for k in range(threads + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run_rows(fn, shape: tuple[int, int, int, int], *args) -> None:
    """fn(*args, b0, b1, L, ED, N) over ranges of rows, in parallel threads (ctypes
    releases the GIL during each call). shape: (B, L, ED, N)."""
    global _pool, _pool_size
    b, *sizes = shape
    ranges = _row_ranges(b)
    if len(ranges) == 1:
        fn(*args, *ranges[0], *sizes)
        return
    if _pool_size < len(ranges):  # one pool per process, grown when torch gets more threads
        _pool = ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="pxby-scan")
        _pool_size = len(ranges)
    for future in [_pool.submit(fn, *args, b0, b1, *sizes) for b0, b1 in ranges]:
        future.result()


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _prepare(u, delta, A, B, C, D):
    """Contiguous inputs in one dtype (the promoted one, as the PyTorch paths compute: the
    model's A is float32 even in a float64 model); autograd casts the gradients back."""
    if u.device.type != "cpu":
        raise ValueError("selective_scan: the 'native' backend runs on the CPU; "
                         f"got {u.device} inputs (use 'auto')")
    dtype = u.dtype
    for t in (delta, A, B, C, D):
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype not in DTYPES:
        raise ValueError("selective_scan: the 'native' backend computes in float32 or float64, "
                         f"got inputs {[str(t.dtype) for t in (u, delta, A, B, C, D)]}")
    return tuple(t.detach().to(dtype).contiguous() for t in (u, delta, A, B, C, D))


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
            return_last_state: bool = False):
    """y (B, L, ED) [and h_L (B, ED, N)], no graph."""
    lib = _load()
    u, delta, A, B, C, D = _prepare(u, delta, A, B, C, D)
    b, length, ed = u.shape
    n = A.shape[1]
    y = torch.empty_like(u)
    last = u.new_empty(b, ed, n) if return_last_state else None
    _run_rows(lib.pxby_scan_forward, (b, length, ed, n), DTYPES[u.dtype],
              *map(_ptr, (u, delta, A, B, C, D, y, last)))
    return (y, last) if return_last_state else y


def backward(u, delta, A, B, C, D, dy):
    """The gradients (du, d delta, dA, dB, dC, dD) of sum(y * dy)."""
    lib = _load()
    u, delta, A, B, C, D = _prepare(u, delta, A, B, C, D)
    dy = dy.contiguous()
    b, length, ed = u.shape
    n = A.shape[1]
    d_u, d_delta = torch.empty_like(u), torch.empty_like(u)
    d_b, d_c = torch.empty_like(B), torch.empty_like(C)
    d_a_rows = u.new_empty(b, ed, n)
    _run_rows(lib.pxby_scan_backward, (b, length, ed, n), DTYPES[u.dtype],
              *map(_ptr, (u, delta, A, B, C, D, dy, d_u, d_delta, d_a_rows, d_b, d_c)))
    d_d = (dy * u).sum((0, 1))
    return d_u, d_delta, d_a_rows.sum(0), d_b, d_c, d_d


class ScanFn(torch.autograd.Function):
    """The fused C++ scan under autograd: saves only its (contiguous) inputs and recomputes
    the states in the backward."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):
        inputs = _prepare(u, delta, A, B, C, D)
        ctx.save_for_backward(*inputs)
        return forward(*inputs)

    @staticmethod
    def backward(ctx, dy):
        return backward(*ctx.saved_tensors, dy)
