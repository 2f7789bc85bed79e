"""Training on every position (`models.<row>.objective: every`) and the held-out
next-token metric: one code path for the last-position and every-position logits, the
causal models only, targets that are the next centre at each position, and a seeded
set of test positions scored like the training log's samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from test_train import tiny_items

from pxby_lib.config import ParamsError, build_config
from pxby_lib.dataset import WindowSamples
from pxby_lib.models import ModelConfig, build_model
from pxby_lib.nexttoken import heldout_positions, next_token_scores
from pxby_lib.onestep import evaluate_samples
from pxby_lib.train import TrainConfig, train

CAUSAL = [ModelConfig(family="rnn", bidirectional=False, d_model=18, d_state=8, depth=2),
          ModelConfig(family="rnn", bidirectional=False, embedding="center", conv=False,
                      d_model=18, d_state=8, depth=1),
          ModelConfig(family="ssm", bidirectional=False, d_model=18, d_state=8, depth=2),
          ModelConfig(family="transformer_causal", d_model=20, depth=1)]
NOT_CAUSAL = [ModelConfig(family="rnn", bidirectional=True, d_model=18, d_state=8, depth=1),
              ModelConfig(family="ssm", bidirectional=True, d_model=18, d_state=8, depth=1),
              ModelConfig(family="transformer", d_model=20, depth=1)]
IDS = lambda c: f"{c.family}-{'bi' if c.bidirectional else 'uni'}-{c.embedding}"  # noqa: E731


def windows(b=3, length=12, seed=0):
    return torch.randint(0, 113, (b, length, 3, 3), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config", CAUSAL, ids=IDS)
def test_every_position_logits_share_the_paper_forward(config):
    """forward_all's last position == forward (the paper's), and position t sees only
    windows 0..t (changing later windows leaves it unchanged)."""
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert model.causal
    x = windows()
    with torch.no_grad():
        every = model.forward_all(x)  # (B, L, V)
        assert every.shape == (3, 12, 113)
        torch.testing.assert_close(every[:, -1], model(x), rtol=0, atol=1e-6)
        changed = x.clone()
        changed[:, 7:] = windows(seed=1)[:, 7:]
        torch.testing.assert_close(model.forward_all(changed)[:, :7], every[:, :7], rtol=0, atol=1e-6)
        assert not torch.allclose(model.forward_all(changed)[:, 7:], every[:, 7:])


@pytest.mark.parametrize("config", NOT_CAUSAL, ids=IDS)
def test_models_that_see_the_future_have_no_every_position_logits(config):
    model = build_model(config)
    assert not model.causal
    with pytest.raises(ValueError, match="not causal"):
        model.forward_all(windows())


def test_config_refuses_every_position_training_of_a_model_that_sees_the_targets():
    raw = yaml.safe_load(open("params.yaml"))
    raw["models"]["x"] = {"family": "rnn", "bidirectional": False, "objective": "every"}
    assert build_config(raw).models["x"].objective == "every"
    assert build_config(raw).models["rnn_bi_pxby_conv_d81_s64_l2"].objective == "last"  # default
    for spec, why in (({"family": "rnn", "bidirectional": True}, "bidirectional"),
                      ({"family": "ssm"}, "bidirectional"),
                      ({"family": "transformer"}, "unmasked")):
        raw["models"]["x"] = {**spec, "objective": "every"}
        with pytest.raises(ParamsError, match=f"models.x.objective = 'every'.*{why}"):
            build_config(raw)
    raw["models"]["x"] = {"family": "rnn", "objective": "all"}
    with pytest.raises(ParamsError, match="models.x.objective = 'all'"):
        build_config(raw)


def test_every_position_targets_are_the_next_centres():
    items = tiny_items(3)
    samples = WindowSamples(items, seq_len=16, stride=8)
    idx = np.arange(len(samples))
    x, y_last = samples.batch(idx)
    x_all, y_all = samples.batch(idx, every=True)
    assert torch.equal(x, x_all) and y_all.shape == (len(idx), 16)
    assert torch.equal(y_all[:, -1], y_last)  # the paper's target is the last of them
    assert torch.equal(y_all[:, :-1], x[:, 1:, 1, 1])  # each position: the next centre


def test_training_on_every_position_is_seeded_and_learns(tmp_path):
    items = tiny_items(6)
    samples = (WindowSamples(items[:4], 16, 8), WindowSamples(items[4:], 16, 8))
    cfg = TrainConfig(max_epochs=3, batch_size=4, eval_every=1)
    weights = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        model = build_model(CAUSAL[0])
        result = train(model, *samples, cfg, tmp_path / name, seed=0, device="cpu",
                       progress=False, objective="every")
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    history = result.history
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[1]
    with pytest.raises(ValueError, match="objective 'every' needs a causal model"):
        train(build_model(NOT_CAUSAL[0]), *samples, cfg, tmp_path / "c", seed=0,
              device="cpu", progress=False, objective="every")


def test_heldout_positions_are_seeded_and_scored_as_the_training_log_would():
    items = tiny_items(5)
    first = heldout_positions([len(w) for w in items], n=40, seed=3)
    again = heldout_positions([len(w) for w in items], n=40, seed=3)
    assert np.array_equal(first, again) and len(first) == 40
    assert not np.array_equal(first, heldout_positions([len(w) for w in items], n=40, seed=4))
    torch.manual_seed(0)
    model = build_model(CAUSAL[0]).eval()
    frame, scores = next_token_scores(model, items, first, seq_len=16, device=torch.device("cpu"))
    assert list(frame.columns) == ["item", "position", "image", "next_nll", "next_acc"]
    assert frame["next_nll"].mean() == pytest.approx(scores["nll"])
    # the same positions as training-log samples: (start = position - seq_len) mod L
    every = WindowSamples(items, seq_len=16, stride=1)
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in items])])
    index = [offsets[k] + (p - 16) % len(items[k]) for k, p in first]
    log = evaluate_samples(model, every, np.asarray(index), torch.device("cpu"))
    assert scores["nll"] == pytest.approx(log["loss"], rel=1e-6)
    assert scores["acc"] == pytest.approx(log["accuracy"] / 100)
    n_text, n_image = scores["n_text"], scores["n_image"]
    assert n_text + n_image == 40 and n_text > 0 and n_image > 0
    assert scores["nll"] == pytest.approx((scores["nll_text"] * n_text + scores["nll_image"] * n_image) / 40)
