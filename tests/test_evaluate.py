"""Evaluation protocols: chunking, a perfect model scores perfectly, batched == one by one."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from pxby_lib.config import EvaluateConfig
from pxby_lib.evaluate import (
    evaluate_heldout,
    evaluate_one_by_one,
    evaluate_paper,
    paper_chunks,
    summary_to_json,
)
from pxby_lib.generate import generate_one
from pxby_lib.metrics import window_metrics
from pxby_lib.models import build_model
from pxby_lib.sequence import encode_item, part_index
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text

P, G, STRIDE = 12, 6, 20  # small protocol: same code path as 64 / 16 / 80


def tiny_model(seed: int = 0) -> nn.Module:
    """The tiny test configuration of the real models, untrained and seeded."""
    torch.manual_seed(seed)
    return build_model({"family": "rnn", "d_model": 18, "d_state": 8, "depth": 1})


def make_items(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        h, w = rng.integers(3, 8, 2)
        grid = rng.integers(FIRST_COLOR_ID, FIRST_COLOR_ID + 6, (h, w))
        items.append(encode_item(grid, encode_text("a fire lizard, 10 m tall"[: 8 + 3 * i])[0]))
    return items


class LookupOracle(nn.Module):
    """A perfect model: finds each row's chunk from its prompt and returns the true next id."""

    def __init__(self, items):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.table = {}
        for i, s in paper_chunks(items, range(len(items)), P, G, STRIDE):
            pos = (s + np.arange(P)) % len(items[i])
            self.table[items[i][pos].tobytes()] = (items[i][:, 1, 1], s)

    def forward(self, x):  # (B, L, 3, 3)
        logits = torch.zeros(x.shape[0], 113)
        for b in range(x.shape[0]):
            centres, start = self.table[x[b, :P].numpy().astype(np.uint8).tobytes()]
            logits[b, int(centres[(start + x.shape[1]) % len(centres)])] = 1
        return logits


class Constant(nn.Module):
    def __init__(self, token_id):
        super().__init__()
        self.token_id = token_id
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 113)
        logits[:, self.token_id] = 1
        return logits


def test_paper_chunks_start_every_stride_positions_and_keep_the_dataset_index():
    items = [np.zeros((n, 3, 3), np.uint8) for n in (160, 81, 80, 5)]
    ev = EvaluateConfig()  # the pipeline's 64 / 16 / 80
    layout = (ev.prompt_len, ev.gen_len, ev.chunk_stride)
    chunks = paper_chunks(items, [0, 1, 2, 3], *layout)
    assert chunks.tolist() == [[0, 0], [0, 80], [1, 0], [1, 80], [2, 0], [3, 0]]
    assert chunks.dtype == np.int64
    assert paper_chunks(items, [3, 1], *layout).tolist() == [[3, 0], [1, 0], [1, 80]]  # indices
    assert paper_chunks(items, [], *layout).shape == (0, 2)
    with pytest.raises(ValueError, match="item ids outside 0..3"):
        paper_chunks(items, [4], *layout)


def test_perfect_model_scores_perfectly_including_wrapped_chunks():
    items = make_items(5)
    chunks = paper_chunks(items, range(len(items)), P, G, STRIDE)
    wraps = [(s + P + G) > len(items[i]) for i, s in chunks]
    assert any(wraps)  # some chunks cross the caption '\n' -> shape '(' boundary
    per_chunk, summary = evaluate_paper(LookupOracle(items), items, range(len(items)), prompt_len=P,
                                        gen_len=G, chunk_stride=STRIDE, batch_size=4)
    assert summary["n_chunks"] == len(chunks) == len(per_chunk)
    assert (per_chunk["hamming"] == 0).all()
    np.testing.assert_allclose(per_chunk["cosine"], 1.0)
    np.testing.assert_allclose(per_chunk["bleu"], 1.0)
    assert summary["hamming_mean"] == 0 and summary["bleu_mean"] == pytest.approx(1.0)


def test_batched_equals_one_by_one_and_the_reference_metrics():
    items, model = make_items(4, seed=1), tiny_model()
    ids = range(len(items))
    batched, summary = evaluate_paper(model, items, ids, prompt_len=P, gen_len=G,
                                      chunk_stride=STRIDE, batch_size=5)
    single, _ = evaluate_one_by_one(model, items, ids, prompt_len=P, gen_len=G, chunk_stride=STRIDE)
    assert batched.equals(single)
    assert batched["hamming"].between(0.01, 0.99).any()  # an untrained model: neither 0 nor 1
    # chunk 3 by hand: generate once, score with scipy / nltk (window_metrics)
    item, start = batched.loc[3, ["item", "start"]]
    w, L = items[item], len(items[item])
    context = w[:, 1, 1][np.arange(start + P) % L]
    out = generate_one(model, w[(start + np.arange(P)) % L], context, G)
    expected = window_metrics(out.windows, w[(start + P + np.arange(G)) % L])
    assert batched.loc[3, ["hamming", "cosine", "bleu"]].tolist() == pytest.approx(expected)
    assert summary["hamming_std"] == pytest.approx(batched["hamming"].std(ddof=1))
    assert summary["cosine_mean"] == pytest.approx(batched["cosine"].mean())


def test_heldout_uses_test_items_and_centres_only():
    items = make_items(6, seed=2)
    test_idx = [1, 4]
    per_chunk, summary = evaluate_heldout(LookupOracle(items), items, test_idx, prompt_len=P,
                                          gen_len=G, chunk_stride=STRIDE, batch_size=3)
    assert set(per_chunk["item"]) == {1, 4}
    assert (per_chunk["centre_acc"] == 1).all() and (per_chunk["centre_hamming"] == 0).all()
    assert summary["pixel_acc_mean"] == 1 and summary["text_bleu_mean"] == pytest.approx(1.0)
    assert summary["n_items"] == 2

    const = FIRST_COLOR_ID  # a model that always says "colour 58"
    per_chunk, summary = evaluate_heldout(Constant(const), items, test_idx, prompt_len=P,
                                          gen_len=G, chunk_stride=STRIDE)
    truth, parts = [], []
    for i, s in per_chunk[["item", "start"]].to_numpy():
        pos = (s + P + np.arange(G)) % len(items[i])
        truth.append(items[i][pos, 1, 1])
        parts.append(part_index(items[i][:, 1, 1])[pos])
    truth, parts = np.array(truth), np.array(parts)
    np.testing.assert_allclose(per_chunk["centre_acc"], (truth == const).mean(1))
    assert per_chunk["n_image"].tolist() == (parts == 1).sum(1).tolist()
    assert summary["pixel_acc_pooled"] == pytest.approx((truth[parts == 1] == const).mean())
    assert 0 < summary["pixel_acc_pooled"] < 1
    assert summary["text_acc_pooled"] == 0.0  # a colour is never a caption character
    no_text = per_chunk["n_caption"] == 0
    assert per_chunk.loc[no_text, "text_bleu"].isna().all()
    assert summary["text_bleu_n"] == int((~no_text).sum())


def test_summary_to_json_is_atomic_and_strict(tmp_path):
    path = tmp_path / "out" / "summary.json"
    summary_to_json({"a": np.float64(0.5), "b": math.nan, "n": np.int64(3)}, path)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": None, "n": 3}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temp file left
