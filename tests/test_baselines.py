"""Baselines on hand-made sequences: what each rule predicts, and where it looks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pxby_lib.baselines import BASELINES, fit_baseline, next_windows
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID, VOCAB_SIZE, encode_text

A, B, C, D = 58, 59, 60, 61  # four colours
GRID = np.array([[A, B, C],
                 [D, A, B],
                 [C, D, A]], dtype=np.uint8)
CAPTION = encode_text("ab ab")[0]
ITEM = encode_item(GRID, CAPTION)  # shape "(3, 3)\n", the 3x3 image, "ab ab\n"
CENTRES = ITEM[:, 1, 1].astype(int)
IMAGE_START = int(np.flatnonzero(CENTRES == PART_END_ID)[0]) + 1  # first pixel


def predict(baseline, windows: np.ndarray) -> int:
    logits = baseline(torch.as_tensor(windows[None], dtype=torch.long))  # (1, V)
    assert logits.shape == (1, VOCAB_SIZE)
    return int(logits.argmax(-1))


def test_next_windows_are_the_true_windows_without_their_centre():
    for n in range(1, len(ITEM)):
        expected = ITEM[n].copy()
        expected[1, 1] = 0
        assert np.array_equal(next_windows(ITEM[None, :n])[0], expected), n


def test_copy_rule_at_a_row_start_inside_a_row_and_in_text():
    copy = fit_baseline("copy", [ITEM])
    row2 = IMAGE_START + 4  # image row 2 starts after row 1's three pixels and its '\t'
    # at a row start: the pixel above the next position (row 1, column 0) is A
    assert CENTRES[row2 - 1] == ROW_SEP_ID and predict(copy, ITEM[:row2]) == A
    # inside a row: above the next position (row 2, column 1) is row 1's B
    assert predict(copy, ITEM[: row2 + 1]) == B
    # the first image row has no row above: the current token is copied (the shape's '\n')
    assert predict(copy, ITEM[: IMAGE_START + 1]) == CENTRES[IMAGE_START]
    # in text there is never a row above: copy the current character
    caption_at = len(ITEM) - 3  # "ab ab\n": after "ab a"
    assert predict(copy, ITEM[:caption_at]) == CENTRES[caption_at - 1]
    assert not copy.has_loss


def test_most_frequent_predicts_the_commonest_training_token_everywhere():
    base = fit_baseline("most_frequent", [ITEM])
    counts = np.bincount(CENTRES, minlength=VOCAB_SIZE)
    for n in (1, IMAGE_START, len(ITEM) - 1):
        assert predict(base, ITEM[:n]) == int(counts.argmax())
    logits = base(torch.as_tensor(ITEM[None, :5], dtype=torch.long))
    assert torch.allclose(logits.exp().sum(-1), torch.ones(1, dtype=torch.float32))


def test_count_models_learn_the_context_and_back_off():
    # training data where the left neighbour decides: after A comes B, after B comes C
    train = [encode_item(np.array([[A, B, C, A, B, C]], dtype=np.uint8), encode_text("x")[0])] * 3
    for name in ("count_pair", "count_window"):
        model = fit_baseline(name, train)
        item = train[0]
        start = int(np.flatnonzero(item[:, 1, 1] == PART_END_ID)[0]) + 1
        assert predict(model, item[: start + 1]) == B  # current A -> B
        assert predict(model, item[: start + 2]) == C  # current B -> C
        probs = model.probabilities(next_windows(item[None, : start + 1]))
        assert probs.shape == (1, VOCAB_SIZE) and np.isclose(probs.sum(), 1.0)
        assert (probs > 0).all()  # smoothed: every id keeps some mass
    # an unseen context backs off to shorter ones, and finally to the unigram
    window = fit_baseline("count_window", train)
    unseen = np.zeros((1, 3, 3), np.uint8)
    unseen[0, 0, :] = 100  # a row above that never occurred
    unseen[0, 1, 0] = A  # left neighbour A: (left) context seen
    assert int(window.probabilities(unseen).argmax()) == B
    unknown = np.zeros((1, 3, 3), np.uint8)
    unknown[0, 1, 0] = 111  # never seen even alone: the unigram's most frequent
    counts = np.bincount(np.concatenate(train)[:, 1, 1], minlength=VOCAB_SIZE)
    assert int(window.probabilities(unknown).argmax()) == int(counts.argmax())


def test_every_baseline_runs_through_generation_and_rejects_unknown_names():
    from pxby_lib.generate import generate

    prompts = ITEM[None, :12]
    for name in BASELINES:
        out = generate(fit_baseline(name, [ITEM], 1.0, 8, 4), prompts, [CENTRES[:12]], 5)
        assert out.ids.shape == (1, 5) and out.windows.shape == (1, 5, 3, 3)
    with pytest.raises(ValueError, match="unknown baseline 'gru'"):
        fit_baseline("gru", [ITEM])


@pytest.mark.slow
def test_next_windows_hold_on_real_prompts(raw_data, tmp_path):
    """The rules read the next position's cells off the prompt: exact for every 64-window
    prompt of real items (rows are shorter than 64 windows), wrap included."""
    from pxby_lib.config import EvaluateConfig
    from pxby_lib.dataset import load_dataset
    from pxby_lib.evaluate import paper_chunks
    from pxby_lib.prepare import prepare_dataset

    prepare_dataset(raw_data, tmp_path / "ds", limit_items=20)
    items = load_dataset(tmp_path / "ds").items()
    ev = EvaluateConfig()
    chunks = paper_chunks(items, range(len(items)), ev.prompt_len, ev.gen_len, ev.chunk_stride)
    prompts = np.stack([items[i][(s + np.arange(ev.prompt_len)) % len(items[i])]
                        for i, s in chunks])
    truth = np.stack([items[i][(s + ev.prompt_len) % len(items[i])] for i, s in chunks]).copy()
    truth[:, 1, 1] = 0
    assert np.array_equal(next_windows(prompts), truth)


def test_the_diagnostic_counts_only_the_paper_samples_targets():
    """count_window_targets: the windows at (start + seq_len) mod L, start every stride,
    i.e. exactly the targets of the paper's WindowSamples, and nothing else."""
    from pxby_lib.baselines import DIAGNOSTIC, paper_targets
    from pxby_lib.dataset import WindowSamples

    items = [ITEM, encode_item(GRID[::-1].copy(), CAPTION)]
    seq_len, stride = 5, 4
    targets = paper_targets(items, seq_len, stride)
    _, y = WindowSamples(items, seq_len, stride).batch(np.arange(len(WindowSamples(items, seq_len, stride))))
    assert np.array_equal(targets[:, 1, 1], y.numpy())  # the same targets, in the same order
    model = fit_baseline("count_window_targets", items, 1.0, seq_len, stride)
    full = fit_baseline("count_window", items, 1.0)
    assert model.chain == full.chain and set(DIAGNOSTIC) == {"count_window_targets"}
    assert model.tables[-1][2].sum() == len(targets) < full.tables[-1][2].sum() == sum(map(len, items))
    with pytest.raises(ValueError, match="give seq_len and sample_stride"):
        fit_baseline("count_window_targets", items)
