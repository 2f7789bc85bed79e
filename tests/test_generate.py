"""Generation: batched == one by one, windows rebuilt with the dataset's rules."""

import numpy as np
import pytest
import torch
from torch import nn

from pxby_lib.generate import generate, generate_one, minimal_context, next_ids, row_generators
from pxby_lib.models import build_model
from pxby_lib.sequence import WindowBuilder, encode_item, windows_from_centres
from pxby_lib.tokenizer import FIRST_COLOR_ID, encode_text


def tiny_model(seed: int = 0) -> nn.Module:
    """The tiny test configuration of the real models, untrained and seeded."""
    torch.manual_seed(seed)
    return build_model({"family": "rnn", "d_model": 18, "d_state": 8, "depth": 1})


def make_items(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    words = ["a small seed", "it breathes fire.", "leaf (grass)", "found in caves, 10 m deep"]
    items = []
    for i in range(n):
        h, w = rng.integers(3, 9, 2)
        grid = rng.integers(FIRST_COLOR_ID, FIRST_COLOR_ID + 6, (h, w))
        items.append(encode_item(grid, encode_text(" ".join(words[: 1 + i % 4]))[0]))
    return items


class Oracle(nn.Module):
    """Predicts the true next centre of one item, from the input length (a perfect model)."""

    def __init__(self, centres: np.ndarray, start: int):
        super().__init__()
        self.centres, self.start = centres, start
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):  # (B, L, 3, 3)
        logits = torch.zeros(x.shape[0], 113)
        logits[:, int(self.centres[(self.start + x.shape[1]) % len(self.centres)])] = 1
        return logits


def _prompts(items, spots, P):
    prompts, contexts = [], []
    for i, s in spots:
        c = items[i][:, 1, 1]
        prompts.append(items[i][s : s + P])
        contexts.append(c[: s + P])
    return np.stack(prompts), contexts


def test_oracle_reproduces_item_windows_across_the_wrap():
    item = make_items(3)[2]
    c, L = item[:, 1, 1], len(item)
    P, n = 10, 30
    start = L - P - 12  # generation crosses the caption's '\n' -> shape '(' wrap
    history = np.concatenate([c, c])[: start + P]
    out = generate_one(Oracle(c, start), item[start : start + P], history, n)
    pos = (start + P + np.arange(n)) % L
    np.testing.assert_array_equal(out.ids, c[pos])
    np.testing.assert_array_equal(out.windows, item[pos])


def test_greedy_batched_equals_one_by_one():
    items, model = make_items(4), tiny_model()
    spots = [(0, 0), (1, 5), (2, 17), (3, 30), (1, 0)]
    prompts, contexts = _prompts(items, spots, P=12)
    batched = generate(model, prompts, contexts, 9)
    assert batched.ids.shape == (5, 9) and batched.ids.dtype == np.int64
    assert batched.windows.shape == (5, 9, 3, 3) and batched.windows.dtype == np.uint8
    for b in range(5):
        one = generate_one(model, prompts[b], contexts[b], 9)
        np.testing.assert_array_equal(one.ids, batched.ids[b])
        np.testing.assert_array_equal(one.windows, batched.windows[b])
    sliced = generate(model, prompts, contexts, 9, batch_size=2)
    np.testing.assert_array_equal(sliced.ids, batched.ids)
    assert len(np.unique(batched.ids)) > 1  # rows really differ: not a constant output


def test_sampling_with_row_generators_is_batch_independent():
    items, model = make_items(4), tiny_model(1)
    prompts, contexts = _prompts(items, [(0, 0), (1, 3), (2, 6), (3, 9)], P=8)
    batched = generate(model, prompts, contexts, 12, temperature=1.0,
                       generator=row_generators(7, 4))
    for b in range(4):
        one = generate_one(model, prompts[b], contexts[b], 12, temperature=1.0,
                           generator=[row_generators(7, 4)[b]])
        np.testing.assert_array_equal(one.ids, batched.ids[b])
    again = generate(model, prompts, contexts, 12, temperature=1.0, generator=row_generators(7, 4))
    np.testing.assert_array_equal(again.ids, batched.ids)
    other = generate(model, prompts, contexts, 12, temperature=1.0, generator=row_generators(8, 4))
    greedy = generate(model, prompts, contexts, 12)
    assert (other.ids != batched.ids).any() and (greedy.ids != batched.ids).any()


def test_top_k_one_is_greedy_and_sampling_respects_top_k():
    items, model = make_items(2), tiny_model(2)
    prompts, contexts = _prompts(items, [(0, 0), (1, 4)], P=8)
    greedy = generate(model, prompts, contexts, 6)
    top1 = generate(model, prompts, contexts, 6, temperature=2.0, top_k=1,
                    generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(top1.ids, greedy.ids)
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0, 3.0]]).repeat(500, 1)
    picks = next_ids(logits, temperature=10.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(picks.tolist()) == {1, 2}  # only the two best ids, both drawn at high temperature


def test_generated_windows_follow_the_builder_and_model_sees_whole_sequence():
    item = make_items(1)[0]
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_model(3)

        def forward(self, x):
            seen.append((x.clone(), self.training))
            return self.inner(x)

    spy = Spy().train()
    P = 7
    out = generate_one(spy, item[:P], item[:P, 1, 1], 5)
    assert spy.training  # mode restored after generation
    assert [x.shape[1] for x, _ in seen] == [P, P + 1, P + 2, P + 3, P + 4]
    assert not any(training for _, training in seen)  # eval mode during generation
    np.testing.assert_array_equal(seen[-1][0][0, :P].numpy(), item[:P])
    np.testing.assert_array_equal(seen[-1][0][0, P:].numpy(), out.windows[:4])
    np.testing.assert_array_equal(out.windows, windows_from_centres(out.ids, item[:P, 1, 1]))


def test_minimal_context_continues_like_the_full_context():
    item = make_items(2, seed=5)[1]
    c, L = item[:, 1, 1], len(item)
    unrolled = np.concatenate([c, c])
    for s in range(1, L + 5):
        short = minimal_context(unrolled[:s])
        assert len(short) <= len(unrolled[:s])
        full_b, short_b = WindowBuilder(unrolled[:s]), WindowBuilder(short)
        for t in unrolled[s : s + 12]:
            np.testing.assert_array_equal(short_b.push(t), full_b.push(t), err_msg=f"s={s}")


def test_input_errors_name_the_problem():
    model = tiny_model()
    with pytest.raises(ValueError, match="one per prompt"):
        generate(model, np.zeros((2, 4, 3, 3), np.uint8), [[3]], 2)
    with pytest.raises(ValueError, match=r"\(B, P, 3, 3\)"):
        generate(model, np.zeros((2, 4, 9), np.uint8), [[3], [3]], 2)
    with pytest.raises(ValueError, match="one per row"):
        generate(model, np.zeros((2, 4, 3, 3), np.uint8), [[3], [3]], 2, temperature=1.0,
                 generator=row_generators(0, 3))
