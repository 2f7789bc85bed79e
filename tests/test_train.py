"""Training: seeded determinism, resume == uninterrupted, safe checkpoints, the log's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pxby_lib.checkpoint import load_model, load_state_into, read_checkpoint
from pxby_lib.data import WindowSamples
from pxby_lib.models import ModelConfig, build_model
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text
from pxby_lib.train import HISTORY_COLUMNS, TrainConfig, train

TINY = ModelConfig(family="rnn", bidirectional=True, embedding="pxby", conv=True,
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


def run(tmp_path, samples, cfg, name, **kw):
    torch.manual_seed(cfg.seed)
    model = build_model(TINY)
    hist = train(model, *samples, cfg, tmp_path / name, progress=False, **kw)
    return model, hist


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_bit_identical_weights(tmp_path, samples):
    cfg = TrainConfig(epochs=2, batch_size=4, eval_every=1, seed=3, device="cpu")
    m1, h1 = run(tmp_path, samples, cfg, "a")
    m2, h2 = run(tmp_path, samples, cfg, "b")
    assert states_equal(m1.state_dict(), m2.state_dict())
    cols = [c for c in HISTORY_COLUMNS if c not in ("seconds", "windows_per_s")]
    assert h1[cols].equals(h2[cols])
    for name in ("last.pt", "best.pt"):  # the files themselves, not only the tensors
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    cfg_other = TrainConfig(epochs=2, batch_size=4, eval_every=1, seed=4, device="cpu")
    m3, _ = run(tmp_path, samples, cfg_other, "c")
    assert not states_equal(m1.state_dict(), m3.state_dict())


def test_resume_equals_uninterrupted(tmp_path, samples):
    cfg = TrainConfig(epochs=3, batch_size=4, eval_every=2, seed=0, device="cpu")
    full, h_full = run(tmp_path, samples, cfg, "full")
    # interrupted after epoch 1, then started again (new process = new model object)
    run(tmp_path, samples, cfg, "resumed", stop_after_epoch=1)
    assert (tmp_path / "resumed" / "resume.pt").exists()
    assert not (tmp_path / "resumed" / "last.pt").exists()
    torch.manual_seed(12345)  # a different init must not matter: the resume state wins
    resumed = build_model(TINY)
    h_res = train(resumed, *samples, cfg, tmp_path / "resumed", progress=False)
    assert states_equal(full.state_dict(), resumed.state_dict())
    cols = [c for c in HISTORY_COLUMNS if c not in ("seconds", "windows_per_s")]
    assert h_full[cols].equals(h_res[cols])
    assert not (tmp_path / "resumed" / "resume.pt").exists()
    for name in ("last.pt", "best.pt"):  # byte-identical files, not only equal tensors
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    a = read_checkpoint(tmp_path / "full" / "best.pt")
    b = read_checkpoint(tmp_path / "resumed" / "best.pt")
    assert states_equal(a["model_state"], b["model_state"])


def test_resume_state_for_other_settings_is_ignored(tmp_path, samples):
    cfg = TrainConfig(epochs=2, batch_size=4, eval_every=1, seed=0, device="cpu")
    run(tmp_path, samples, cfg, "x", stop_after_epoch=1)
    other = TrainConfig(epochs=2, batch_size=4, eval_every=1, seed=0, lr=5e-4, device="cpu")
    fresh, _ = run(tmp_path, samples, other, "fresh")
    again, _ = run(tmp_path, samples, other, "x")
    assert states_equal(fresh.state_dict(), again.state_dict())


def test_history_follows_the_paper_log(tmp_path, samples):
    cfg = TrainConfig(epochs=5, batch_size=4, eval_every=2, seed=0, device="cpu")
    _, hist = run(tmp_path, samples, cfg, "log")
    assert list(hist.columns) == HISTORY_COLUMNS
    assert hist.epoch.tolist() == [0, 2, 4, 5]  # 0, every 2, and the final epoch
    first = hist.iloc[0]
    assert first.train_eval_loss == first.test_loss and np.isnan(first.train_loss)
    assert (hist.epoch > 0).sum() == hist.train_loss.notna().sum()
    assert hist.test_accuracy.between(0, 100).all()
    best = read_checkpoint(tmp_path / "log" / "best.pt")
    logged = hist[hist.epoch >= 1]
    assert best["best_epoch"] == int(logged.loc[logged.test_loss.idxmin(), "epoch"])
    assert best["best_epoch"] >= 1
    on_disk = (tmp_path / "log" / "history.csv").read_text().splitlines()
    assert len(on_disk) == 1 + len(hist)


def test_checkpoints_are_safe_and_checked(tmp_path, samples):
    cfg = TrainConfig(epochs=1, batch_size=4, eval_every=1, seed=0, device="cpu")
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
    with pytest.raises(FileNotFoundError, match="train the model first"):
        read_checkpoint(tmp_path / "missing.pt")
