"""Rendering of (possibly malformed) sequences, and the pxby-generate command end to end."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pxby_lib import cli
from pxby_lib.checkpoint import save_checkpoint
from pxby_lib.models import build_model
from pxby_lib.pixels import grid_to_rgb
from pxby_lib.render import (
    GENERATED,
    MARGIN,
    PLACEHOLDER,
    render_comparison,
    render_item,
    token_places,
)
from pxby_lib.sequence import decode_centres, encode_item
from pxby_lib.tokenizer import FIRST_COLOR_ID, PART_END_ID, ROW_SEP_ID, encode_text

CAPTION = "a small fire lizard. the flame on its tail shows its life."


def make_item(seed=0, h=5, w=4, caption=CAPTION):
    rng = np.random.default_rng(seed)
    grid = rng.integers(FIRST_COLOR_ID, FIRST_COLOR_ID + 10, (h, w))
    return grid, encode_item(grid, encode_text(caption)[0])


# ------------------------------------------------------------------------------ render


def test_render_item_shows_the_sprite_upscaled():
    grid, item = make_item()
    scale = 6
    img = render_item(item[:, 1, 1], scale=scale)
    assert img.mode == "RGB"
    x0 = (img.width - grid.shape[1] * scale) // 2
    region = np.asarray(img)[MARGIN : MARGIN + grid.shape[0] * scale, x0 : x0 + grid.shape[1] * scale]
    expected = grid_to_rgb(grid).repeat(scale, 0).repeat(scale, 1)
    np.testing.assert_array_equal(region, expected)
    # centres, windows and a DecodedItem give the same picture
    for other in (item, decode_centres(item[:, 1, 1])):
        assert np.array_equal(np.asarray(render_item(other, scale=scale)), np.asarray(img))


def test_longer_caption_makes_a_taller_picture_and_title_adds_a_line():
    _, short = make_item(caption="tiny")
    _, long = make_item(caption=" ".join(["a long caption line"] * 20))
    a, b = render_item(short[:, 1, 1]), render_item(long[:, 1, 1])
    assert a.width == b.width and b.height > a.height + 30
    assert render_item(short[:, 1, 1], title="original").height > a.height


@pytest.mark.parametrize(
    "centres",
    [
        [],  # nothing at all
        list(encode_text("(5, 4)")[0]) + [PART_END_ID],  # shape only: no image part
        list(encode_text("(5, 4)")[0]) + [PART_END_ID, PART_END_ID] + list(encode_text("hi")[0]),
        [60, 61, ROW_SEP_ID, 62, ROW_SEP_ID, 63, 64, 65, 33, PART_END_ID, 70, 71],  # ragged, bytes
        [PART_END_ID, 60, PART_END_ID, 0, 1, 70, 33],  # pad / separator / colour in the caption
    ],
)
def test_render_survives_malformed_sequences(centres):
    img = render_item(np.array(centres, dtype=np.int64), scale=4, title="generated")
    assert img.width > 0 and img.height > 0
    decoded = decode_centres(np.array(centres, dtype=np.int64))
    has_image = decoded.image_rgb is not None and decoded.image_rgb.size > 0
    assert (tuple(np.asarray(img)[MARGIN + 30, img.width // 2]) == PLACEHOLDER) != has_image


def test_generated_tokens_are_marked_on_pixels_and_characters():
    grid, item = make_item(3)
    ids = item[:, 1, 1]
    plain = np.asarray(render_item(ids, scale=6))
    none = np.asarray(render_item(ids, scale=6, generated=np.zeros(len(ids), bool)))
    assert np.array_equal(plain, none)  # nothing generated: nothing marked
    marked = np.asarray(render_item(ids, scale=6, generated=np.ones(len(ids), bool)))
    magenta = (marked == np.array(GENERATED, np.uint8)).all(-1)
    assert magenta.sum() > 0 and not (plain == np.array(GENERATED, np.uint8)).all(-1).any()
    top = MARGIN  # the sprite (no title): every pixel gets a frame at scale 6
    sprite = magenta[top : top + grid.shape[0] * 6]
    assert sprite.any(axis=1).sum() >= grid.shape[0]
    assert magenta[top + grid.shape[0] * 6 + MARGIN :].any()  # and the caption's characters
    places = token_places(ids)
    assert places[ids.tolist().index(ROW_SEP_ID) + 1] == (1, 1, 0)  # image row 1, column 0
    with pytest.raises(ValueError, match="flags for"):
        render_item(ids, generated=[True])


def test_render_comparison_puts_both_side_by_side():
    _, a = make_item(0)
    _, b = make_item(1, h=7, w=3, caption="another one")
    left, right = render_item(a[:, 1, 1], title="original"), render_item(b[:, 1, 1], title="generated")
    both = render_comparison(a[:, 1, 1], b[:, 1, 1])
    assert both.size == (left.width + right.width, max(left.height, right.height))
    np.testing.assert_array_equal(np.asarray(both)[: left.height, : left.width], np.asarray(left))


# ------------------------------------------------------------------------------ CLI


def save_tiny(path, seed=0, **config):
    """A real checkpoint of the tiny test model (untrained), written by checkpoint.save_checkpoint
    with what training writes: model_config, model_state, settings {train, seed}, epoch."""
    torch.manual_seed(seed)
    model = build_model({"family": "rnn", "d_model": 18, "d_state": 8, "depth": 1, **config})
    save_checkpoint({"model_config": model.config.to_dict(), "model_state": model.state_dict(),
                     "settings": {"train": {"seq_len": 64}, "seed": seed}, "epoch": 1}, path)
    return path


@pytest.fixture
def checkpoint(tmp_path):
    return save_tiny(tmp_path / "tiny.pt")


def write_dataset(folder, items):
    """A prepared-dataset folder (the files of dataset.load_dataset) holding `items`."""
    folder.mkdir()
    lengths = [len(w) for w in items]
    np.save(folder / "windows.npy", np.concatenate(items).astype(np.uint8))
    np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    meta = pd.DataFrame({"item": range(len(items)), "id": range(1, len(items) + 1),
                         "name": [f"mon{i}" for i in range(len(items))],
                         "n_tokens": lengths, "n_text": 0, "n_image": 0, "height": 5, "width": 4})
    meta.to_csv(folder / "items.csv", index=False)


def test_cli_item_writes_a_comparison(checkpoint, tmp_path, capsys):
    items = [make_item(i)[1] for i in range(3)]
    write_dataset(tmp_path / "ds", items)
    out = tmp_path / "pics" / "item.png"
    rc = cli.main(["--checkpoint", str(checkpoint), "--item", "2", "--dataset", str(tmp_path / "ds"),
                   "--prompt-len", "20", "--n-tokens", "15", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "caption:" in printed and f"wrote {out}" in printed
    picture = Image.open(out)
    assert picture.width == 2 * render_item(items[2][:, 1, 1]).width  # original | generated


def test_cli_caption_and_sprite_prompts(checkpoint, tmp_path, capsys):
    rc = cli.main(["--checkpoint", str(checkpoint), "--caption", "A Fire lizard!",
                   "--n-tokens", "12", "--out", str(tmp_path / "c.png")])
    assert rc == 0 and "caption: a fire lizard!" in capsys.readouterr().out
    assert Image.open(tmp_path / "c.png").size[0] > 0

    sprite = np.full((12, 10, 3), 255, np.uint8)
    sprite[2:10, 2:8] = (248, 56, 0)  # one palette-red block on white
    Image.fromarray(sprite).save(tmp_path / "s.png")
    args = ["--checkpoint", str(checkpoint), "--sprite", str(tmp_path / "s.png"),
            "--n-tokens", "10", "--temperature", "1.0", "--top-k", "5", "--seed", "3"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert "shape: (25, 18)" in first  # the sprite's own shape string starts the sequence
    assert cli.main(args) == 0 and capsys.readouterr().out == first  # seeded: reproducible


def test_cli_errors_are_clear(checkpoint, tmp_path, capsys):
    assert cli.main(["--checkpoint", str(tmp_path / "nope.pt"), "--caption", "x"]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint " in err and "nope.pt does not exist" in err and "dvc pull" in err
    write_dataset(tmp_path / "ds", [make_item(0)[1]])
    assert cli.main(["--checkpoint", str(checkpoint), "--item", "5",
                     "--dataset", str(tmp_path / "ds")]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main(["--checkpoint", str(checkpoint), "--caption", "???"]) == 2
    assert "no encodable characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: exactly one prompt source
        cli.main(["--checkpoint", str(checkpoint), "--caption", "x", "--item", "0"])


def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pxby_lib.cli", "--checkpoint",
                           str(tmp_path / "missing.pt"), "--caption", "hello"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "missing.pt does not exist" in done.stderr
    assert done.stderr.startswith("pxby-generate: ") and done.stderr.count("\n") == 1
