"""Training: seeded determinism, resume == uninterrupted, safe checkpoints, the log's rules,
the stopping rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pxby_lib.checkpoint import load_model, load_state_into, read_checkpoint
from pxby_lib.dataset import WindowSamples
from pxby_lib.models import ModelConfig, build_model
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text
from pxby_lib.train import HISTORY_COLUMNS, TrainConfig, stop_reason, train

TINY = ModelConfig(family="rnn", bidirectional=True, embedding="pxby", conv=True,
                   d_model=18, d_state=8, depth=1)
# the SSM trains through the fused native scan ('auto' on the CPU), both directions
TINY_SSM = ModelConfig(family="ssm", bidirectional=True, embedding="pxby", conv=True,
                       d_model=18, d_state=8, depth=1)


def tiny_items(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        grid = rng.integers(FIRST_COLOR_ID, FIRST_COLOR_ID + 6, size=(4, 3)).astype(np.uint8)
        ids, _ = encode_text(f"item {i} is a small test sprite")
        items.append(encode_item(grid, ids))
    return items


@pytest.fixture(scope="module")
def samples():
    items = tiny_items(6)
    return WindowSamples(items[:4], seq_len=16, stride=8), WindowSamples(items[4:], seq_len=16, stride=8)


def schedule(**kw) -> TrainConfig:
    return TrainConfig(**{"max_epochs": 2, "batch_size": 4, "eval_every": 1, **kw})


def run(tmp_path, samples, cfg, name, seed=0, model_config=TINY, **kw):
    torch.manual_seed(seed)
    model = build_model(model_config)
    result = train(model, *samples, cfg, tmp_path / name, seed=seed, device="cpu",
                   progress=False, **kw)
    return model, result.history


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model_config", [TINY, TINY_SSM], ids=["rnn", "ssm"])
def test_same_seed_gives_bit_identical_weights(tmp_path, samples, model_config):
    cfg = schedule()
    if model_config.family == "ssm":
        from pxby_lib.models.scan import pick_backend

        assert pick_backend(torch.zeros(2, 16, 36), 8) == "native"
    m1, h1 = run(tmp_path, samples, cfg, "a", seed=3, model_config=model_config)
    m2, h2 = run(tmp_path, samples, cfg, "b", seed=3, model_config=model_config)
    assert states_equal(m1.state_dict(), m2.state_dict())
    assert h1.equals(h2)
    for name in ("last.pt", "best.pt", "history.csv"):  # the files themselves
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    m3, _ = run(tmp_path, samples, cfg, "c", seed=4, model_config=model_config)
    assert not states_equal(m1.state_dict(), m3.state_dict())


def test_resume_equals_uninterrupted(tmp_path, samples):
    cfg = schedule(max_epochs=3, eval_every=2)
    full, h_full = run(tmp_path, samples, cfg, "full")
    # interrupted after epoch 1, then started again (new process = new model object)
    run(tmp_path, samples, cfg, "resumed", stop_after_epoch=1)
    assert (tmp_path / "resumed" / "resume.pt").exists()
    assert not (tmp_path / "resumed" / "last.pt").exists()
    torch.manual_seed(12345)  # a different init must not matter: the resume state wins
    resumed = build_model(TINY)
    h_res = train(resumed, *samples, cfg, tmp_path / "resumed", seed=0, device="cpu",
                  progress=False).history
    assert states_equal(full.state_dict(), resumed.state_dict())
    assert h_full.equals(h_res)
    assert not (tmp_path / "resumed" / "resume.pt").exists()
    for name in ("last.pt", "best.pt"):  # byte-identical files, not only equal tensors
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    a = read_checkpoint(tmp_path / "full" / "best.pt")
    b = read_checkpoint(tmp_path / "resumed" / "best.pt")
    assert states_equal(a["model_state"], b["model_state"])


def test_resume_state_for_other_settings_is_ignored(tmp_path, samples):
    cfg = schedule()
    run(tmp_path, samples, cfg, "x", stop_after_epoch=1)
    other = schedule(lr=5e-4)
    fresh, _ = run(tmp_path, samples, other, "fresh")
    again, _ = run(tmp_path, samples, other, "x")
    assert states_equal(fresh.state_dict(), again.state_dict())


def test_history_follows_the_paper_log(tmp_path, samples):
    cfg = schedule(max_epochs=5, eval_every=2)
    _, hist = run(tmp_path, samples, cfg, "log")
    assert list(hist.columns) == HISTORY_COLUMNS
    assert hist.epoch.tolist() == [0, 2, 4, 5]  # 0, every 2, and the final epoch
    first = hist.iloc[0]
    assert first.train_eval_loss == first.test_loss and np.isnan(first.train_loss)
    assert (hist.epoch > 0).sum() == hist.train_loss.notna().sum()
    assert hist.test_accuracy.between(0, 100).all()
    per_epoch = -(-len(samples[0]) // cfg.batch_size)
    assert hist.steps.tolist() == [e * per_epoch for e in (0, 2, 4, 5)]
    best = read_checkpoint(tmp_path / "log" / "best.pt")
    logged = hist[hist.epoch >= 1]
    assert best["best_epoch"] == int(logged.loc[logged.test_loss.idxmin(), "epoch"])
    assert best["best_epoch"] >= 1
    on_disk = (tmp_path / "log" / "history.csv").read_text().splitlines()
    assert len(on_disk) == 1 + len(hist)


def test_checkpoints_are_safe_and_checked(tmp_path, samples):
    cfg = schedule(max_epochs=1)
    model, _ = run(tmp_path, samples, cfg, "ck")
    loaded, meta = load_model(tmp_path / "ck" / "last.pt")
    assert states_equal(model.state_dict(), loaded.state_dict())
    assert meta["model_config"] == TINY.to_dict() and meta["epoch"] == 1
    wrong = build_model(ModelConfig(family="rnn", d_model=18, d_state=16, depth=1))
    with pytest.raises(ValueError, match="different architecture"):
        load_state_into(wrong, read_checkpoint(tmp_path / "ck" / "last.pt"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "ck" / "last.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot be read safely"):
        read_checkpoint(truncated)
    # a pickle that would run code is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"format": "pxby-checkpoint/1", "x": ValueError("not a tensor")}, evil)
    with pytest.raises(ValueError, match="cannot be read safely"):
        read_checkpoint(evil)
    with pytest.raises(FileNotFoundError, match="dvc pull"):
        read_checkpoint(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- stopping rule


def log(*losses):
    """A synthetic training log: epoch 0, 1, ... with these test losses."""
    return [{"epoch": e, "test_loss": v} for e, v in enumerate(losses)]


def best_of(history):
    logged = [r for r in history if r["epoch"] >= 1]
    return min(logged, key=lambda r: r["test_loss"])["epoch"] if logged else -1


@pytest.mark.parametrize(("losses", "patience", "cap", "expected"), [
    ((5.0, 3.0, 2.0, 1.9), 2, 10, None),  # still improving
    ((5.0, 3.0, 2.0, 2.1), 2, 10, None),  # one evaluation without a new best
    ((5.0, 3.0, 2.0, 2.1, 2.05), 2, 10, "patience"),  # two in a row: stop
    ((5.0, 3.0, 2.0, 2.1, 1.99), 2, 10, None),  # a new best resets the count
    ((5.0, 3.0, 3.0), 1, 10, "patience"),  # equal is not better (strict <)
    ((5.0, 3.0, 2.0), 2, 2, "cap"),  # the cap ends an improving run
    ((5.0, 6.0, 7.0, 8.0), 0, 3, "cap"),  # patience 0 never stops early (the paper)
    ((5.0, 9.0, 9.5), 2, 10, None),  # epoch 0 is never a best: epoch 1 is
])
def test_stopping_rule_on_a_synthetic_log(losses, patience, cap, expected):
    history = log(*losses)
    cfg = TrainConfig(max_epochs=cap, patience=patience, eval_every=1)
    assert stop_reason(history, best_of(history), cfg) == expected


def test_training_stops_by_the_rule_and_says_so(tmp_path, samples):
    cfg = schedule(max_epochs=30, patience=1, lr=0.05)  # a high rate: the test loss turns soon
    _, hist = run(tmp_path, samples, cfg, "stop")
    last = read_checkpoint(tmp_path / "stop" / "last.pt")
    assert last["stopped_by"] == "patience" and last["epoch"] == hist.epoch.iloc[-1] < 30
    assert hist.test_loss.iloc[-1] >= last["best_test_loss"]  # the last logged was no new best
    assert read_checkpoint(tmp_path / "stop" / "best.pt")["epoch"] == last["best_epoch"]
    capped = schedule(max_epochs=2, patience=5)
    run(tmp_path, samples, capped, "cap")
    assert read_checkpoint(tmp_path / "cap" / "last.pt")["stopped_by"] == "cap"


def test_resume_after_the_stopping_decision_ends_the_same(tmp_path, samples):
    cfg = schedule(max_epochs=30, patience=1, lr=0.05)
    run(tmp_path, samples, cfg, "full")
    stop = read_checkpoint(tmp_path / "full" / "last.pt")["epoch"]
    run(tmp_path, samples, cfg, "cut", stop_after_epoch=stop)  # killed right after deciding
    run(tmp_path, samples, cfg, "cut")
    for name in ("last.pt", "best.pt", "history.csv"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
