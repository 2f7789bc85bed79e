"""The fast selective scans against the sequential reference (forward and every gradient)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from pxby_lib.models import scan, scan_native, scan_triton
from pxby_lib.models.scan import (
    SelectiveScanFn,
    selective_scan,
    selective_scan_reference,
    selective_scan_with_state,
)


def scan_inputs(b: int, length: int, ed: int, n: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, length, ed, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(b, length, ed, generator=g, dtype=dtype))
    A = -torch.rand(ed, n, generator=g, dtype=dtype) * 3 - 0.1
    B = torch.randn(b, length, n, generator=g, dtype=dtype)
    C = torch.randn(b, length, n, generator=g, dtype=dtype)
    D = torch.randn(ed, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


def forward_and_grads(fn, inputs, seed: int = 1):
    y = fn(*inputs)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    return y, torch.autograd.grad(y, inputs, dy)


def assert_matches_reference(fn, inputs, tol: float) -> None:
    y_ref, g_ref = forward_and_grads(selective_scan_reference, inputs)
    y, g = forward_and_grads(fn, inputs)
    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    for name, a, b in zip(("u", "delta", "A", "B", "C", "D"), g, g_ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, n=name: f"d{n}: {m}")


def test_reference_is_the_recurrence_written_out():
    # two steps by hand: h1 = dB1 u1, h2 = exp(d2 A) h1 + d2 B2 u2; y = C h + D u
    u, delta, A, B, C, D = (t.detach() for t in scan_inputs(1, 2, 3, 2))
    h1 = (delta[0, 0] * u[0, 0])[:, None] * B[0, 0][None, :]
    h2 = torch.exp(delta[0, 1][:, None] * A) * h1 + (delta[0, 1] * u[0, 1])[:, None] * B[0, 1][None, :]
    expected = torch.stack([h1 @ C[0, 0] + D * u[0, 0], h2 @ C[0, 1] + D * u[0, 1]])
    torch.testing.assert_close(selective_scan_reference(u, delta, A, B, C, D)[0], expected)


@pytest.mark.parametrize("segment, block", [(1, 1), (3, 2), (4, 64), (5, 3), (32, 4)])
def test_eager_scan_matches_reference_float64(segment, block):
    # L = 13 and B = 5 are multiples of neither segment nor block: the padding is exercised
    inputs = scan_inputs(5, 13, 6, 4)
    assert_matches_reference(
        lambda *x: selective_scan(*x, backend="eager", segment=segment, block=block), inputs, 1e-10)


def test_eager_scan_matches_reference_float32_at_model_like_shapes():
    inputs = scan_inputs(3, 40, 16, 8, dtype=torch.float32, seed=3)
    assert_matches_reference(lambda *x: selective_scan(*x, backend="eager"), inputs, 1e-5)


def test_eager_scan_passes_gradcheck():
    inputs = scan_inputs(2, 5, 3, 2, seed=4)
    assert torch.autograd.gradcheck(
        lambda *x: SelectiveScanFn.apply(*x, "eager", 2, 1, False, True), inputs)


def test_compiled_scan_matches_reference():
    # torch.compile of the unrolled segment kernels (a few seconds to compile at segment 2)
    inputs = scan_inputs(3, 7, 4, 3, seed=5)
    assert_matches_reference(
        lambda *x: selective_scan(*x, backend="compiled", segment=2, block=2), inputs, 1e-10)


def test_no_grad_forward_matches():
    inputs = scan_inputs(2, 9, 4, 3, seed=6)
    with torch.no_grad():
        y = selective_scan(*inputs, backend="eager", segment=4)
    torch.testing.assert_close(y, selective_scan_reference(*inputs).detach())


def final_state_reference(u, delta, A, B, C, D):
    """h_L of the recurrence written out (what generation continues from)."""
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None]
    return h


@pytest.mark.parametrize("backend", ["eager", "compiled"])
def test_scan_with_state_returns_y_and_the_last_state(backend):
    # B 5, L 11: padded rows and steps (zeros must leave the state unchanged)
    inputs = [t.detach() for t in scan_inputs(5, 11, 4, 3, seed=8)]
    y, last = selective_scan_with_state(*inputs, backend=backend)
    torch.testing.assert_close(y, selective_scan_reference(*inputs), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(last, final_state_reference(*inputs), atol=1e-10, rtol=1e-10)


def test_reference_scan_returns_the_last_state_on_request():
    inputs = [t.detach() for t in scan_inputs(2, 7, 4, 3, seed=9)]
    y, last = selective_scan_reference(*inputs, return_last_state=True)
    torch.testing.assert_close(y, selective_scan_reference(*inputs))
    torch.testing.assert_close(last, final_state_reference(*inputs), atol=1e-12, rtol=1e-12)


@pytest.fixture
def no_native(monkeypatch):
    """As on a machine without a C++ compiler: the native kernel cannot be built."""
    monkeypatch.setattr(scan_native, "_lib", None)
    monkeypatch.setattr(scan_native, "_error", None)
    monkeypatch.setattr(scan_native, "_compiler", lambda: None)
    monkeypatch.setattr(scan, "_fallback_warned", set())
    monkeypatch.delenv("PXBY_SCAN_BACKEND", raising=False)


def test_auto_falls_back_to_eager_when_compiling_fails(monkeypatch, no_native):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(scan._CompiledChunks, "__init__", broken)
    monkeypatch.setattr(scan, "COMPILE_MIN_ELEMENTS", 1)  # make 'auto' choose 'compiled'
    monkeypatch.setattr(scan, "_compile_failed", False)
    inputs = scan_inputs(2, 6, 3, 2, seed=7)
    with pytest.warns(UserWarning, match="'native' scan cannot run here"):
        assert scan.pick_backend(inputs[0], 2) == "compiled"
    with pytest.warns(UserWarning, match="torch.compile failed"):
        y, grads = forward_and_grads(selective_scan, inputs)
    assert scan._compile_failed and scan.pick_backend(inputs[0], 2) == "eager"
    y_ref, grads_ref = forward_and_grads(selective_scan_reference, inputs)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):  # explicit: no fallback
        selective_scan(*inputs, backend="compiled")


def test_pick_backend(monkeypatch):
    monkeypatch.delenv("PXBY_SCAN_BACKEND", raising=False)
    monkeypatch.setattr(scan, "_compile_failed", False)
    small, large = torch.zeros(2, 8, 4), torch.zeros(64, 256, 162)
    assert scan.pick_backend(small, 64) == "native"  # CPU: the fused kernel, any size
    assert scan.pick_backend(large, 64) == "native"
    monkeypatch.setenv("PXBY_SCAN_BACKEND", "eager")
    assert scan.pick_backend(large, 64) == "eager"
    monkeypatch.setenv("PXBY_SCAN_BACKEND", "fast")
    with pytest.raises(ValueError, match="PXBY_SCAN_BACKEND"):
        scan.pick_backend(small, 64)
    with pytest.raises(ValueError, match="mamba_ssm"):
        scan.pick_backend(small, 64, "cuda")
    with pytest.raises(ValueError, match="'triton' needs CUDA inputs"):
        scan.pick_backend(small, 64, "triton")


def test_without_a_compiler_auto_warns_once_and_takes_the_segmented_path(no_native):
    small, large = torch.zeros(2, 8, 4), torch.zeros(64, 256, 162)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler found") as caught:
        assert scan.pick_backend(small, 64) == "eager"
        assert scan.pick_backend(large, 64) == "compiled"
    assert len(caught) == 1  # one line per process, not one per call
    assert not scan_native.available()
    with pytest.raises(ValueError, match="backend 'native' needs CPU inputs and a C\\+\\+ compiler"):
        scan.pick_backend(small, 64, "native")


# ---- the fused CPU kernel ('native') ----------------------------------------------------


@pytest.mark.parametrize("b, length, ed, n", [(5, 13, 6, 4), (1, 1, 3, 2), (3, 200, 5, 7)])
def test_native_scan_matches_reference_float64(b, length, ed, n):
    # odd sizes (N not a multiple of the vector width), a single step, a long sequence
    inputs = scan_inputs(b, length, ed, n, seed=11)
    assert_matches_reference(lambda *x: selective_scan(*x, backend="native"), inputs, 1e-10)


def test_native_scan_matches_reference_float32_long_and_extreme_delta():
    # L 600; delta from 1e-6 (the state barely decays) to 30 (exp(delta A) underflows to 0)
    inputs = scan_inputs(2, 600, 8, 16, dtype=torch.float32, seed=12)
    with torch.no_grad():
        delta = inputs[1]
        delta[:, ::3] = 1e-6
        delta[:, 1::7] = 30.0
    assert_matches_reference(lambda *x: selective_scan(*x, backend="native"), inputs, 2e-4)


def test_native_scan_float32_at_the_reference_size():
    # ED 162, N 64 (vectorised loops with their reductions), the model's A = -exp(A_log)
    inputs = scan_inputs(2, 24, 162, 64, dtype=torch.float32, seed=13)
    assert_matches_reference(lambda *x: selective_scan(*x, backend="native"), inputs, 1e-4)


def test_native_scan_passes_gradcheck():
    inputs = scan_inputs(2, 5, 3, 2, seed=14)
    assert torch.autograd.gradcheck(lambda *x: scan_native.ScanFn.apply(*x), inputs)


def test_native_scan_bytes_do_not_depend_on_threads_or_the_run():
    inputs = scan_inputs(7, 33, 10, 16, dtype=torch.float32, seed=15)
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 3, 3):
            torch.set_num_threads(n_threads)
            y, grads = forward_and_grads(lambda *x: selective_scan(*x, backend="native"), inputs)
            results.append([y, *grads])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_native_scan_with_state_and_no_grad():
    inputs = [t.detach() for t in scan_inputs(5, 11, 4, 3, seed=16)]
    y, last = selective_scan_with_state(*inputs, backend="native")
    torch.testing.assert_close(y, selective_scan_reference(*inputs), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(last, final_state_reference(*inputs), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(selective_scan(*inputs, backend="native"), y, atol=0, rtol=0)


def test_native_scan_promotes_mixed_dtypes_and_refuses_half():
    # the model's A is float32 in a float64 model: computed in float64, as PyTorch would
    inputs = scan_inputs(2, 5, 3, 2, seed=17)
    inputs[2] = inputs[2].detach().float().requires_grad_()
    y, grads = forward_and_grads(lambda *x: selective_scan(*x, backend="native"), inputs)
    y_ref, grads_ref = forward_and_grads(selective_scan_reference, inputs)
    assert y.dtype == torch.float64 and grads[2].dtype == torch.float32
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(grads[2], grads_ref[2])
    u, delta, A, B, C, D = (t.detach().half() for t in scan_inputs(2, 5, 3, 2))
    with pytest.raises(ValueError, match="computes in float32 or float64"):
        selective_scan(u, delta, A, B, C, D, backend="native")


def test_native_build_is_cached_under_pxby_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PXBY_CACHE_DIR", str(tmp_path))
    path = scan_native.build()
    assert path.parent == tmp_path and path.suffix == ".so"
    assert scan_native.build() == path and [p.name for p in tmp_path.iterdir()] == [path.name]


# ---- the Triton kernel ('triton'), here under Triton's interpreter -------------------------

needs_triton = pytest.mark.skipif(scan_triton.triton is None, reason="the triton package "
                                  "is not installed (pip install -e '.[dev]' installs it)")

TRITON_CHECK = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_scan import assert_matches_reference, final_state_reference, scan_inputs
from pxby_lib.models import scan_triton
from pxby_lib.models.scan import selective_scan_reference
assert scan_triton.available()
# L 37: a partial last chunk (CHUNK 16); ED 20: a partial channel block; N 5: masked lanes
for shape in [(3, 37, 20, 5), (2, 16, 16, 64)]:
    inputs = scan_inputs(*shape, dtype=torch.float32, seed=21)
    assert_matches_reference(lambda *x: scan_triton.ScanFn.apply(*x), inputs, 1e-4)
    plain = [t.detach() for t in inputs]
    y, last = scan_triton.forward(*plain, return_last_state=True)
    torch.testing.assert_close(y, selective_scan_reference(*plain), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last, final_state_reference(*plain), atol=1e-4, rtol=1e-4)
print("triton kernels match")
"""


@needs_triton
def test_triton_scan_matches_reference_under_the_interpreter():
    # a fresh process: triton reads TRITON_INTERPRET when a kernel is jitted
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    tests = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", TRITON_CHECK.format(tests=tests)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "triton kernels match" in out.stdout, out.stderr[-3000:]


def test_shape_errors_name_the_argument():
    u, delta, A, B, C, D = (t.detach() for t in scan_inputs(2, 5, 3, 2))
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(u, delta, A, B[:, :4], C, D)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A.T, B, C, D)
    with pytest.raises(ValueError, match="D must be"):
        selective_scan_reference(u, delta, A, B, C, D[:2])
