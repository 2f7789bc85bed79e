"""benchmarks/bench_evaluate.py: the work counts behind its roofline bound, and a tiny run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_scan import scan_inputs  # tests/ is on sys.path (no __init__.py)
from torch.utils.flop_counter import FlopCounterMode

from pxby_lib.models.scan import selective_scan_reference

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


def test_exp_counter_counts_one_exp_per_state_element_of_the_scan(bench):
    u, delta, A, B, C, D = (t.detach() for t in scan_inputs(2, 5, 3, 4))  # B L ED N
    with bench.ExpCounter() as exps:
        selective_scan_reference(u, delta, A, B, C, D)
    assert exps.count == 2 * 5 * 3 * 4


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
        bound, times_min = float(cells[-1]), float(cells[-2])
        # the batched path can't beat the minimum time, and the bound is positive
        assert times_min >= 1.0 and bound > 0
