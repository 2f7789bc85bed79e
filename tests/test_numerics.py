"""Pinned CPU numerics (pxby_lib.runtime): the same bytes on any x86-64 machine with AVX2.

This machine can only switch the caps DOWN (to SSE/default kernels), so the test shows
the two things it can: (1) each cap reaches its library (lowering it changes the bytes of
a training step: the pins are not decoration), and (2) with the pins, an environment that
asks for other kernels still gets the pinned ones (same bytes as the pipeline). The check
value of the issue comes from an AVX2-only machine: the untrained reference model's
epoch-0 test loss on the real data (seq_len 256, stride 128, seed 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEP = """
import hashlib, torch, torch.nn.functional as F
import pxby_lib
from pxby_lib.models import build_model
from pxby_lib.runtime import check_numerics, set_threads
set_threads(1)
out = []
for cfg in ({"family": "rnn", "d_model": 18, "d_state": 8, "depth": 2},
            {"family": "transformer", "d_model": 16, "depth": 1},
            {"family": "ssm", "d_model": 16, "d_state": 8, "depth": 1}):
    torch.manual_seed(0)
    m = build_model(cfg); opt = torch.optim.AdamW(m.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        x = torch.randint(0, 113, (4, 24, 3, 3), generator=g); y = torch.randint(0, 113, (4,), generator=g)
        loss = F.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
    out.append(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest()[:12])
print(" ".join(out), torch.backends.cpu.get_cpu_capability(), "|".join(check_numerics()) or "ok")
"""


def _run(env: dict[str, str]) -> list[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "PXBY_NUMERICS")}
    out = subprocess.run([sys.executable, "-c", STEP], env={**full, **env}, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def _has_avx2() -> bool:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " avx2" in text


@pytest.mark.slow
def test_the_pins_hold_against_the_environment_and_each_cap_matters():
    if not _has_avx2():
        pytest.fail("the pinned numerics need an x86-64 CPU with AVX2", pytrace=False)
    pinned = _run({})
    assert pinned[3:] == ["AVX2", "ok"]
    lowered = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}
    # with the pins, an environment asking for other kernels changes nothing
    assert _run(lowered) == pinned
    # without them, each cap alone changes the bytes of at least one family's step
    for key, value in lowered.items():
        native = _run({"PXBY_NUMERICS": "native", key: value})
        assert native[:3] != pinned[:3], f"{key}={value} did not change any result"
    assert "PXBY_NUMERICS=native:" in _run({"PXBY_NUMERICS": "native"})  # says it is opted out


@pytest.mark.slow
def test_untrained_reference_loss_equals_the_avx2_check_value(tmp_path, raw_data):
    import numpy as np
    import torch

    from pxby_lib.dataset import WindowSamples, load_dataset
    from pxby_lib.models import build_model
    from pxby_lib.onestep import evaluate_samples
    from pxby_lib.prepare import prepare_dataset

    prepare_dataset(raw_data, tmp_path / "pokemon")
    dataset = load_dataset(tmp_path / "pokemon")
    _, test = dataset.split(seed=0, test_fraction=0.1)
    samples = WindowSamples(dataset.items(test), seq_len=256, stride=128)
    torch.manual_seed(0)
    model = build_model({"family": "rnn", "d_model": 81, "d_state": 64, "depth": 2})
    loss = evaluate_samples(model, samples, np.arange(len(samples)), torch.device("cpu"))["loss"]
    assert loss == 4.757362257504294  # bit for bit, as measured on an AVX2-only machine


def test_numpy_runs_without_its_avx512_loops_in_the_test_process():
    # conftest imports pxby_lib before anything imports numpy, which reads its cap at import
    from pxby_lib.runtime import numpy_wide_targets

    assert numpy_wide_targets() == []
