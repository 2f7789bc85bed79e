"""benchmarks/bench_evaluate.py: the work counts behind its roofline bound, and a tiny run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pxby_lib.models import MambaBlock

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_evaluate.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_evaluate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_flops(bench, fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=bench.EXTRA_FLOP_FORMULAS) as c:
        fn()
    return c.get_total_flops()


@pytest.mark.parametrize("bidirectional, layers", [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_lstm_flops_are_counted_per_layer_and_direction(bench, bidirectional, layers):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 7, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(3, 4, 5)  # (B, L, I)
    directions = 2 if bidirectional else 1
    expected = 0
    for layer in range(layers):
        inputs = 5 if layer == 0 else 7 * directions
        expected += directions * 2 * 3 * 4 * (4 * 7) * (inputs + 7)  # 2 B L 4H (I + H)
    assert count_flops(bench, lambda: lstm(x)) == expected


def test_cpu_attention_flops_are_q_k_and_v_products(bench):
    q = torch.randn(2, 3, 1, 4)  # (B, h, Lq, d): one query, as the stepper's last layer
    kv = torch.randn(2, 3, 9, 4)  # (B, h, Lk, d)
    expected = 2 * 2 * 3 * 1 * 9 * (4 + 4)
    assert count_flops(bench, lambda: F.scaled_dot_product_attention(q, kv, kv)) == expected


@pytest.mark.parametrize("backend", ["eager", "reference"])
def test_scan_exps_are_one_per_state_element_and_step_with_a_state(bench, backend):
    torch.manual_seed(0)
    block = MambaBlock(12, d_state=5)  # ED 24, N 5
    block.scan_backend = backend
    x = torch.randn(3, 9, 12)  # (B, L, D): L not a multiple of the eager scan's chunk
    with torch.no_grad(), bench.counting_scan_exps() as exps:
        _, window, h = block.mix(block.in_proj(x), return_state=True)
        assert exps[0] == 3 * (9 - 1) * 24 * 5  # the first position has no state to decay
        block.step(x[:, 0])  # from the zero state: nothing to decay
        assert exps[0] == 3 * 8 * 24 * 5
        block.step(x[:, 0], window, h)
        assert exps[0] == 3 * 8 * 24 * 5 + 3 * 24 * 5
    assert MambaBlock.ssm.__name__ == "ssm" and MambaBlock.step.__name__ == "step"  # restored


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_synthetic_items(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # no artifacts/dataset here: synthetic items
    monkeypatch.setattr("sys.argv", ["bench_evaluate.py", "--n-chunks", "3", "--batch-size", "3",
                                     "--models", "att_l1,ssm_uni_l2", "--threads", "1"])
    bench.main()
    out = capsys.readouterr().out
    assert "synthetic" in out and "measured peaks" in out
    table = [line for line in out.splitlines() if line.startswith("| att_l1") or line.startswith("| ssm_uni")]
    assert len(table) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        speed_up, times_min, bound = float(cells[5]), float(cells[-2]), float(cells[-1])
        # the batched path can't beat the minimum time, so its speed-up is within the bound
        assert times_min >= 1.0 and speed_up <= bound
