"""Completions of test sprites (pxby_lib.complete): prompts, batching, stopping, scores,
and the rule that picks each track's row."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from pxby_lib.complete import complete_items, pick_rows, prompt_length, score_completion
from pxby_lib.config import ModelConfig
from pxby_lib.generate import row_generators
from pxby_lib.models import build_model
from pxby_lib.sequence import encode_item
from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID, encode_text


def item(height: int, width: int, caption: str, seed: int = 0) -> np.ndarray:
    """Centre ids of an item with a random sprite of colour ids."""
    grid = np.random.default_rng(seed).integers(101, 113, (height, width))
    windows = encode_item(grid, encode_text(caption)[0])
    return windows[:, 1, 1].astype(np.int64)


def test_the_prompt_is_the_shape_and_the_top_third_of_the_sprite():
    centres = item(7, 5, "a cat")
    shape_len = len("(7, 5)") + 1  # and its '\n'
    assert prompt_length(centres) == shape_len + 3 * 6  # ceil(7 / 3) rows of 5 pixels + '\t'
    assert centres[prompt_length(centres) - 1] == ROW_SEP_ID
    assert prompt_length(item(3, 4, "x")) == len("(3, 4)") + 1 + 1 * 5


def test_a_perfect_completion_scores_perfectly_and_an_empty_one_does_not():
    centres = item(6, 4, "a small dog")
    n = prompt_length(centres)
    perfect = score_completion(centres, n, centres[n:])
    assert perfect == {"well_formed": 1.0, "ended": 1.0, "shape_right": 1.0, "height_error": 0.0,
                       "pixel_acc": 1.0, "caption_bleu": 1.0}
    nothing = score_completion(centres, n, np.zeros(0, np.int64))
    assert nothing["well_formed"] == 0 and nothing["ended"] == 0 and nothing["caption_bleu"] == 0
    assert nothing["pixel_acc"] == 0 and nothing["height_error"] == 6 - 2  # the prompt's 2 rows
    # one extra row: wrong shape, the completed rows' pixels still right
    rows = centres[n:]
    sprite_end = int(np.flatnonzero(rows == PART_END_ID)[0])
    extra = np.concatenate([rows[:sprite_end], [ROW_SEP_ID], rows[sprite_end - 4 : sprite_end],
                            rows[sprite_end:]])
    longer = score_completion(centres, n, extra)
    assert longer["shape_right"] == 0 and longer["height_error"] == 1 and longer["pixel_acc"] == 1


class AlwaysEnds(nn.Module):
    """A stand-in model whose next token is always the part end '\\n'."""

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(windows.shape[0], 113)
        logits[:, PART_END_ID] = 10.0
        return logits


def test_completion_stops_after_the_sprite_and_the_caption_close():
    prompts = [item(6, 4, "cat")[:12], item(9, 9, "dog")[:20]]
    written = complete_items(AlwaysEnds().eval(), prompts, max_new=50)
    assert [w.tolist() for w in written] == [[PART_END_ID, PART_END_ID]] * 2


@pytest.mark.parametrize("family, bidirectional, depth", [
    ("rnn", False, 1), ("ssm", False, 1), ("transformer_causal", False, 1),  # every-position rows
    ("rnn", True, 2), ("ssm", True, 1), ("transformer", True, 1)])  # the paper's kinds
def test_batched_completions_equal_one_by_one_with_prompts_of_any_length(family, bidirectional, depth):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family=family, bidirectional=bidirectional, d_model=16,
                                    d_state=8, depth=depth), context=32).eval()
    items = [item(5, 4, "red bird", 1), item(8, 6, "a blue fish", 2), item(4, 7, "tree", 3)]
    prompts = [c[: prompt_length(c)] for c in items]
    assert len({len(p) for p in prompts}) == 3
    batched = complete_items(model, prompts, 40, temperature=1.0, generators=row_generators(5, 3))
    greedy = complete_items(model, prompts, 40)
    for k, prompt in enumerate(prompts):
        alone = complete_items(model, [prompt], 40, temperature=1.0,
                               generators=row_generators(5 + k, 1))
        assert np.array_equal(alone[0], batched[k]), k
        assert np.array_equal(complete_items(model, [prompt], 40)[0], greedy[k]), k
    assert all(0 < len(w) <= 40 for w in batched)
    with pytest.raises(ValueError, match="one torch.Generator per prompt"):
        complete_items(model, prompts, 5, temperature=1.0)


def test_each_track_gets_its_lowest_nll_row_with_enough_seeds(tmp_path):
    def row(name, objective, seeds, nll):
        path = tmp_path / "metrics" / "toy" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"heldout": {"next_nll": nll}}))
        return SimpleNamespace(name=name, objective=objective, seeds=seeds)

    rows = [row("a", "last", (0, 1, 2), 2.0), row("b", "last", (0,), 1.0),  # b: one seed only
            row("c", "last", (0, 1, 2), 1.9), row("d", "every", (0, 1, 2, 3), 1.4),
            row("e", "every", (0, 1, 2), 1.5)]
    picks = pick_rows(tmp_path, "toy", rows, min_seeds=3)
    assert [(p.track, p.row, p.next_nll) for p in picks] == [("paper", "c", 1.9), ("every", "d", 1.4)]
    assert math.isclose(picks[1].next_nll, 1.4) and picks[1].seeds == (0, 1, 2, 3)


def test_the_report_reads_what_the_stage_writes(tmp_path):
    """completion_report keeps its own copy of the stage's names (so the report does not
    import the generation code): they must agree."""
    from pxby_lib import complete, completion_report

    assert completion_report.SCORES == complete.SCORES
    assert completion_report.MODES == complete.MODES
    assert completion_report.completions_dir(tmp_path, "x") == complete.completions_dir(tmp_path, "x")
