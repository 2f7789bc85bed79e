"""Items as 3x3 window sequences (spec section 5), decoding, and the incremental builder
(section 10), on hand-computed, synthetic and real items."""


import numpy as np
import pytest

from pxby_lib import sequence as sq
from pxby_lib.tokenizer import decode_text, encode_text


def W(top, left, cur):
    return [list(top), [left, cur, 0], [0, 0, 0]]


# "(2, 3)\n" then the 2x3 image 58 59 60 / 61 62 63, then "hi.\n", written by hand.
HAND = np.array([
    W((0, 0, 0), 0, 6), W((0, 0, 0), 6, 15), W((0, 0, 0), 15, 9), W((0, 0, 0), 9, 3),
    W((0, 0, 0), 3, 16), W((0, 0, 0), 16, 7), W((0, 0, 0), 7, 2),
    W((0, 0, 0), 0, 58), W((0, 0, 0), 58, 59), W((0, 0, 0), 59, 60), W((0, 0, 0), 60, 1),
    W((0, 58, 59), 0, 61), W((58, 59, 60), 61, 62), W((59, 60, 1), 62, 63), W((60, 1, 0), 63, 2),
    W((0, 0, 0), 0, 39), W((0, 0, 0), 39, 40), W((0, 0, 0), 40, 12), W((0, 0, 0), 12, 2),
], dtype=np.uint8)


def random_item(rng, h, w, n_chars):
    grid = rng.integers(58, 113, (h, w)).astype(np.uint8)
    caption = rng.integers(3, 58, n_chars)
    caption = caption[(caption != 23) & (caption != 24)].astype(np.uint8)
    return grid, caption


def test_hand_computed_windows():
    grid = np.array([[58, 59, 60], [61, 62, 63]], np.uint8)
    caption, _ = encode_text("Hi.")
    windows = sq.encode_item(grid, caption)
    assert windows.dtype == np.uint8 and windows.shape == (19, 3, 3)
    assert np.array_equal(windows, HAND)


def test_encode_parts_text_windows():
    w = sq.encode_parts([np.array([[40, 41]], np.uint8)])
    assert w.tolist() == [W((0, 0, 0), 0, 40), W((0, 0, 0), 40, 41), W((0, 0, 0), 41, 2)]


def test_centres_and_part_index():
    c = sq.centres(HAND)
    assert c.tolist() == [6, 15, 9, 3, 16, 7, 2, 58, 59, 60, 1, 61, 62, 63, 2, 39, 40, 12, 2]
    assert sq.part_index(c).tolist() == [0] * 7 + [1] * 8 + [2] * 4
    assert sq.part_index(np.concatenate([c, c[:2]])).tolist()[-2:] == [0, 0]  # wraps mod 3
    assert sq.part_index(c).dtype == np.int8


def test_decode_hand_item():
    d = sq.decode_centres(sq.centres(HAND))
    assert d.shape == (2, 3) and d.caption == "hi." and d.problems == []
    assert d.grid.tolist() == [[58, 59, 60], [61, 62, 63]]
    assert d.image_rgb.shape == (2, 3, 3) and d.image_rgb[0, 0].tolist() == [0, 0, 0]
    assert len(d.parts) == 3 and [len(p) for p in d.parts] == [1, 2, 1]


@pytest.mark.parametrize("h, w, n", [(1, 1, 1), (25, 1, 5), (1, 25, 40), (25, 22, 600), (3, 4, 0)])
def test_synthetic_round_trip_and_builder(h, w, n):
    rng = np.random.default_rng(h * 100 + w)
    grid, caption = random_item(rng, h, w, n)
    windows = sq.encode_item(grid, caption)
    assert len(windows) == len(str((h, w))) + 1 + h * (w + 1) + len(caption) + 1
    c = sq.centres(windows)
    d = sq.decode_centres(c)
    assert d.problems == [] and d.shape == (h, w)
    assert np.array_equal(d.grid, grid) and d.caption == decode_text(caption)
    assert np.array_equal(sq.windows_from_centres(c), windows)
    assert np.array_equal(sq.windows_from_centres(c, context=c), windows)  # across the wrap


def test_builder_context_mid_part_and_next_window():
    c = sq.centres(HAND)
    for cut in range(len(c)):
        rebuilt = sq.windows_from_centres(c[cut:], context=c[:cut])
        assert np.array_equal(rebuilt, HAND[cut:]), cut
        ahead = sq.WindowBuilder(c[:cut]).next_window()  # what the next position shows
        expected = HAND[cut].copy()
        expected[1, 1] = 0
        assert np.array_equal(ahead, expected), cut


def test_builder_ragged_rows():
    b = sq.WindowBuilder()
    for t in (58, 59, 1):  # a short first row
        b.push(t)
    assert b.push(60).tolist() == W((0, 58, 59), 0, 60)
    assert b.push(61).tolist() == W((58, 59, 1), 60, 61)
    assert b.push(62).tolist() == W((59, 1, 0), 61, 62)
    assert b.push(63).tolist() == W((1, 0, 0), 62, 63)  # nothing above: 0
    b.push(2)
    assert b.push(40).tolist() == W((0, 0, 0), 0, 40)  # a new part starts clean


def test_encode_item_rejects_bad_input():
    grid = np.full((2, 2), 60, np.uint8)
    with pytest.raises(ValueError, match="colour ids"):
        sq.encode_item(np.array([[60, 3]]), np.array([40]))
    with pytest.raises(ValueError, match="text bytes"):
        sq.encode_item(grid, np.array([40, 2, 41]))
    with pytest.raises(ValueError, match="text bytes"):
        sq.encode_item(grid, np.array([40, 70]))
    empty = sq.encode_item(grid, np.zeros(0, np.uint8))  # an empty caption is just '\n'
    assert empty[-1].tolist() == W((0, 0, 0), 0, 2) and sq.decode_centres(sq.centres(empty)).caption == ""


def test_decode_malformed_never_crashes():
    rng = np.random.default_rng(0)
    for n in [0, 1, 5, 50, 500]:
        for _ in range(20):
            d = sq.decode_centres(rng.integers(0, 113, n))
            assert isinstance(d, sq.DecodedItem)
    d = sq.decode_centres([6, 16, 9, 3, 16, 7, 2, 58, 59, 1, 60, 1, 61, 62, 63, 2, 32, 70])
    assert d.shape == (3, 3) and d.grid.tolist() == [[58, 59, 0], [60, 0, 0], [61, 62, 63]]
    joined = " | ".join(d.problems)
    assert "ragged" in joined and "no closing" in joined and "colour ids" in joined
    assert d.caption == "a\ufffd"
    d = sq.decode_centres([])
    assert d.shape is None and d.grid is None and d.caption == "" and d.problems


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_items(tmp_path_factory, raw_data):
    """(id, grid, caption ids) computed here, and the prepared dataset's windows."""
    from pxby_lib.captions import build_caption
    from pxby_lib.dataset import load_dataset
    from pxby_lib.pixels import image_to_grid
    from pxby_lib.prepare import prepare_dataset
    from pxby_lib.sources.pokemon import load_pokedex, sprite_path

    out = tmp_path_factory.mktemp("real") / "dataset"
    prepare_dataset(raw_data, out)
    ds = load_dataset(out)
    windows = dict(zip(ds.meta["id"], ds.items(), strict=True))
    items = []
    for rec in load_pokedex(raw_data):
        grid = image_to_grid(sprite_path(raw_data, rec["id"]))
        caption, _ = encode_text(build_caption(rec["entries"]))
        items.append((rec["id"], grid, caption, windows[rec["id"]]))
    return items


@pytest.mark.slow
def test_real_round_trip_every_item(real_items):
    assert len(real_items) == 649
    for pid, grid, caption, windows in real_items:
        assert np.array_equal(windows, sq.encode_item(grid, caption)), pid
        d = sq.decode_centres(sq.centres(windows))
        assert d.problems == [], pid
        assert d.shape == grid.shape and np.array_equal(d.grid, grid), pid
        assert d.caption == decode_text(caption) and d.caption, pid


@pytest.mark.slow
def test_real_builder_reconstruction_and_wrap(real_items):
    for pid, _, _, windows in real_items:
        c = sq.centres(windows)
        assert np.array_equal(sq.windows_from_centres(c), windows), pid
        assert np.array_equal(sq.windows_from_centres(c, context=c), windows), pid


@pytest.mark.parametrize("seed", range(5))
def test_builder_from_history_equals_pushing_the_history(seed):
    # the constructor reads the state off the separators; pushing token by token is the
    # definition (rows end at '\t', parts at '\n', contexts may end anywhere)
    from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID

    rng = np.random.default_rng(seed)
    for length in (0, 1, 2, 5, 17, 60):
        history = rng.integers(2, 113, length)
        history[rng.random(length) < 0.2] = ROW_SEP_ID
        history[rng.random(length) < 0.05] = PART_END_ID
        pushed = sq.WindowBuilder()
        for t in history:
            pushed.push(int(t))
        built = sq.WindowBuilder(history)
        assert (built.above, built.row) == (pushed.above, pushed.row), history.tolist()
        assert all(type(t) is int for t in built.above + built.row)
