"""Each family's stepper (its sequential path, next to its forward pass) == the full
forward, step by step, for every family and direction."""

import numpy as np
import pytest
import torch

from pxby_lib.generate import generate
from pxby_lib.models import build_model
from pxby_lib.models.rnn import RNNStepper
from pxby_lib.models.ssm import SSMStepper
from pxby_lib.models.stepper import FullRecompute, make_stepper
from pxby_lib.models.transformer import TransformerStepper
from pxby_lib.sequence import windows_from_centres

CONFIGS = [
    ({"family": "rnn", "bidirectional": True, "depth": 1}, RNNStepper),
    ({"family": "rnn", "bidirectional": True, "depth": 2}, RNNStepper),
    ({"family": "rnn", "bidirectional": True, "depth": 3, "embedding": "center", "conv": False},
     RNNStepper),
    ({"family": "rnn", "bidirectional": False, "depth": 1}, RNNStepper),
    ({"family": "rnn", "bidirectional": False, "depth": 3}, RNNStepper),
    ({"family": "ssm", "bidirectional": True, "depth": 1}, SSMStepper),
    ({"family": "ssm", "bidirectional": True, "depth": 3}, SSMStepper),
    ({"family": "ssm", "bidirectional": False, "depth": 1, "conv": False}, SSMStepper),
    ({"family": "ssm", "bidirectional": False, "depth": 2}, SSMStepper),
    ({"family": "transformer", "depth": 1}, TransformerStepper),
    ({"family": "transformer", "depth": 3}, TransformerStepper),
    ({"family": "transformer_causal", "depth": 2}, FullRecompute),
]


def random_windows(rows: int, length: int, seed: int = 0) -> torch.Tensor:
    """(rows, length, 3, 3) windows rebuilt from random centres (real grid structure)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        centres = rng.integers(1, 113, length)
        centres[rng.random(length) < 0.15] = 1  # '\t' row ends: rows of varied length
        out.append(windows_from_centres(centres))
    return torch.as_tensor(np.stack(out), dtype=torch.long)


def tiny(cfg: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    full = {"d_model": 18, "d_state": 8, **cfg}
    model = build_model(full).eval()
    with torch.no_grad():  # spread the weights so that every path matters in the logits
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("cfg,kind", CONFIGS, ids=lambda c: str(c) if isinstance(c, dict) else "")
@torch.no_grad()
def test_stepper_logits_equal_the_full_forward_at_every_step(cfg, kind):
    model = tiny(cfg)
    windows = random_windows(3, 14)  # (B, L, 3, 3)
    P = 5
    stepper = make_stepper(model, windows[:, :P], capacity=14)
    assert type(stepper) is kind
    for n in range(P, 15):
        full = model(windows[:, :n])  # (B, V): the literal protocol
        scale = max(1.0, full.abs().max().item())  # stacked Mamba blocks have no norm: large logits
        torch.testing.assert_close(stepper.logits(), full, rtol=1e-5, atol=1e-5 * scale,
                                   msg=f"{cfg}: logits differ at length {n}")
        if n < 14:
            stepper.append(windows[:, n])


@pytest.mark.parametrize("cfg", [c for c, _ in CONFIGS[:-1:2]], ids=str)
def test_incremental_generation_gives_the_full_recompute_ids(cfg):
    model = tiny(cfg, seed=1)
    windows = random_windows(6, 9, seed=1).numpy().astype(np.uint8)
    contexts = [w[:, 1, 1] for w in windows]
    fast = generate(model, windows, contexts, 12, batch_size=4)
    slow = generate(model, windows, contexts, 12, batch_size=4, incremental=False)
    np.testing.assert_array_equal(fast.ids, slow.ids)
    np.testing.assert_array_equal(fast.windows, slow.windows)


def test_stepper_state_is_not_shared_and_leaves_the_rng_alone():
    model = tiny({"family": "rnn", "bidirectional": True, "depth": 2})
    windows = random_windows(2, 8)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = make_stepper(model, windows[:, :4], capacity=8)  # builds LSTMs on 'meta': no init draws
    assert torch.equal(torch.rand(3), expected)
    b = make_stepper(model, windows[:, :4], capacity=8)
    with torch.no_grad():
        a.append(windows[:, 4])
        torch.testing.assert_close(b.logits(), model(windows[:, :4]))
        torch.testing.assert_close(a.logits(), model(windows[:, :5]))


def test_stepper_errors_name_the_problem():
    model = tiny({"family": "ssm", "depth": 1})
    windows = random_windows(1, 4)
    with pytest.raises(ValueError, match="capacity 2 is shorter"):
        make_stepper(model, windows, capacity=2)
    stepper = make_stepper(model, windows, capacity=4)
    with pytest.raises(ValueError, match="stepper is full"):
        stepper.append(windows[:, 0])
    with pytest.raises(ValueError, match="model.eval"):
        make_stepper(model.train(), windows, capacity=5)
    with pytest.raises(ValueError, match=r"\[0, 113\)"):
        make_stepper(model.eval(), windows + 200, capacity=5)
