"""The CUDA paths: models, scan, incremental generation, evaluation and training on a GPU.

Marked `cuda`: `make test` (and CI, which has no GPU) deselects them; `make test-cuda`
runs them and FAILS, rather than skips, where no GPU is visible. Each result on the GPU
is compared with the same computation on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_incremental import random_windows  # tests/ is on sys.path (no __init__.py)

from pxby_lib.checkpoint import load_model
from pxby_lib.dataset import WindowSamples
from pxby_lib.evaluate import evaluate_paper
from pxby_lib.generate import generate
from pxby_lib.models import build_model
from pxby_lib.models.scan import selective_scan, selective_scan_reference, selective_scan_with_state
from pxby_lib.models.stepper import make_stepper
from pxby_lib.runtime import resolve_device
from pxby_lib.train import TrainConfig, train

pytestmark = pytest.mark.cuda

FAMILIES = [
    {"family": "rnn", "bidirectional": True, "depth": 2},
    {"family": "rnn", "bidirectional": False, "depth": 2},
    {"family": "transformer", "depth": 2},
    {"family": "ssm", "bidirectional": True, "depth": 2},
    {"family": "ssm", "bidirectional": False, "depth": 2},
]


@pytest.fixture(scope="module", autouse=True)
def gpu():
    assert torch.cuda.is_available(), "make test-cuda needs a visible CUDA GPU (none found)"
    torch.backends.cuda.matmul.allow_tf32 = False  # compare with the CPU at float32 precision
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda")


def tiny(cfg: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model({"d_model": 18, "d_state": 8, **cfg}).eval()


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def test_auto_device_is_the_gpu():
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("cfg", FAMILIES, ids=str)
def test_forward_and_gradients_match_the_cpu(cfg, gpu):
    # training mode (cuDNN's RNN backward needs it) without dropout: the devices draw differently
    cpu_model, gpu_model = no_dropout(tiny(cfg).train()), no_dropout(tiny(cfg).train()).to(gpu)
    x = random_windows(4, 20)
    y = torch.randint(0, 113, (4,))
    losses = []
    for model, dev in ((cpu_model, "cpu"), (gpu_model, gpu)):
        loss = torch.nn.functional.cross_entropy(model(x.to(dev)), y.to(dev))
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (name, a), b in zip(cpu_model.named_parameters(), gpu_model.parameters()):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_scan_with_state_on_the_gpu_matches_the_reference(gpu):
    from test_scan import scan_inputs

    u, delta, A, B, C, D = (t.detach() for t in scan_inputs(3, 17, 8, 4, dtype=torch.float32))
    y, last = selective_scan_with_state(*(t.to(gpu) for t in (u, delta, A, B, C, D)))
    torch.testing.assert_close(y.cpu(), selective_scan_reference(u, delta, A, B, C, D),
                               rtol=1e-4, atol=1e-5)
    assert last.shape == (3, 8, 4)


def test_auto_takes_a_fused_scan_on_the_gpu(gpu):
    from pxby_lib.models import scan

    u = torch.zeros(2, 8, 4, device=gpu)
    expected = "cuda" if scan._cuda_scan_fn is not None else "triton"
    assert scan.pick_backend(u, 3, "auto") == expected
    assert scan.pick_backend(u.double(), 3, "auto") in ("cuda", "eager")  # triton: float32


@pytest.mark.parametrize("backend", ["eager", "compiled", "triton"])
def test_fast_scans_on_the_gpu_match_the_reference_with_gradients(backend, gpu):
    from test_scan import scan_inputs

    # L 37: a partial chunk of the Triton backward; ED 20 and N 5: masked lanes
    inputs = [t.detach().float().to(gpu).requires_grad_() for t in scan_inputs(3, 37, 20, 5)]
    y_ref = selective_scan_reference(*inputs)
    y = selective_scan(*inputs, backend=backend)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    dy = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, inputs, dy), torch.autograd.grad(y_ref, inputs, dy)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cfg", FAMILIES, ids=str)
@torch.no_grad()
def test_incremental_stepper_on_the_gpu_equals_the_full_forward(cfg, gpu):
    model = tiny(cfg).to(gpu)
    x = random_windows(3, 12).to(gpu)
    stepper = make_stepper(model, x[:, :4], capacity=12)
    for n in range(4, 13):
        torch.testing.assert_close(stepper.logits(), model(x[:, :n]), rtol=1e-4, atol=1e-4)
        if n < 12:
            stepper.append(x[:, n])


@pytest.mark.parametrize("cfg", FAMILIES, ids=str)
def test_generation_and_evaluation_on_the_gpu_match_the_cpu(cfg, gpu):
    from test_generate import make_items

    items = make_items(5)
    model = tiny(cfg, seed=2)
    ids = range(len(items))
    cpu_chunks, _ = evaluate_paper(model, items, ids, prompt_len=8, gen_len=6, chunk_stride=10,
                                   batch_size=7)
    gpu_chunks, _ = evaluate_paper(model.to(gpu), items, ids, prompt_len=8, gen_len=6, chunk_stride=10,
                                   batch_size=7, device=gpu)
    pd_equal = (cpu_chunks.to_numpy() == gpu_chunks.to_numpy()).all(axis=1)
    assert pd_equal.mean() >= 0.95, f"{cfg}: {int((~pd_equal).sum())} chunks differ CPU vs GPU"
    windows = random_windows(2, 6).numpy().astype(np.uint8)
    contexts = [w[:, 1, 1] for w in windows]
    a = generate(model, windows, contexts, 5, device=gpu)
    b = generate(model, windows, contexts, 5, device=gpu, incremental=False)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_training_on_the_gpu_resumes_exactly_and_loads_on_the_cpu(tmp_path, gpu):
    from test_train import tiny_items

    torch.use_deterministic_algorithms(True, warn_only=False)
    try:
        items = tiny_items(6)
        samples = (WindowSamples(items[:4], seq_len=16, stride=8),
                   WindowSamples(items[4:], seq_len=16, stride=8))
        cfg = TrainConfig(max_epochs=3, batch_size=4, eval_every=1)
        arch = {"family": "transformer", "depth": 1, "d_model": 16}  # dropout: the CUDA RNG
        runs = {}
        for name, stop in (("whole", None), ("killed", 1)):
            torch.manual_seed(0)
            model = build_model(arch)
            train(model, *samples, cfg, tmp_path / name, seed=1, device="cuda", progress=False,
                  stop_after_epoch=stop)
            if stop is not None:  # a fresh process would rebuild the model, then resume
                torch.manual_seed(0)
                model = build_model(arch)
                train(model, *samples, cfg, tmp_path / name, seed=1, device="cuda", progress=False)
            runs[name] = model
        for k, v in runs["whole"].state_dict().items():
            assert torch.equal(v, runs["killed"].state_dict()[k]), k
        assert (tmp_path / "whole/last.pt").read_bytes() == (tmp_path / "killed/last.pt").read_bytes()
        loaded, meta = load_model(tmp_path / "whole/last.pt", device="cpu")
        assert meta["epoch"] == 3
        x = random_windows(2, 10)
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x), runs["whole"].eval()(x.to(gpu)).cpu(),
                                       rtol=1e-4, atol=1e-5)
    finally:
        torch.use_deterministic_algorithms(False)
