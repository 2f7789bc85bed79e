"""The fast selective scans against the sequential reference (forward and every gradient)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pxby_lib.models import scan
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


def test_auto_falls_back_to_eager_when_compiling_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(scan._CompiledChunks, "__init__", broken)
    monkeypatch.setattr(scan, "COMPILE_MIN_ELEMENTS", 1)  # make 'auto' choose 'compiled'
    monkeypatch.setattr(scan, "_compile_failed", False)
    monkeypatch.delenv("PXBY_SCAN_BACKEND", raising=False)
    inputs = scan_inputs(2, 6, 3, 2, seed=7)
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
    assert scan.pick_backend(small, 64) == "eager"  # tests and generation never compile
    assert scan.pick_backend(large, 64) == "compiled"
    monkeypatch.setenv("PXBY_SCAN_BACKEND", "eager")
    assert scan.pick_backend(large, 64) == "eager"
    monkeypatch.setenv("PXBY_SCAN_BACKEND", "fast")
    with pytest.raises(ValueError, match="PXBY_SCAN_BACKEND"):
        scan.pick_backend(small, 64)
    with pytest.raises(ValueError, match="mamba_ssm"):
        scan.pick_backend(small, 64, "cuda")


def test_shape_errors_name_the_argument():
    u, delta, A, B, C, D = (t.detach() for t in scan_inputs(2, 5, 3, 2))
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(u, delta, A, B[:, :4], C, D)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A.T, B, C, D)
    with pytest.raises(ValueError, match="D must be"):
        selective_scan_reference(u, delta, A, B, C, D[:2])
