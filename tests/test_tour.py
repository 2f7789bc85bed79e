"""The tour's pictures (pxby_lib.tour) show the ids where the windows have them."""

from __future__ import annotations

import numpy as np
import pytest

from pxby_lib import tour
from pxby_lib.sequence import encode_item, part_index
from pxby_lib.tokenizer import (
    FIRST_COLOR_ID,
    PALETTE_RGB,
    PART_END_ID,
    ROW_SEP_ID,
    decode_text,
    encode_text,
    is_color,
)

GRID = np.array([[58, 59, 60, 61], [62, 63, 64, 65], [66, 67, 68, 69]])  # (3, 4) colour ids
CAPTION = "a big cat"


@pytest.fixture
def item() -> np.ndarray:
    return encode_item(GRID, encode_text(CAPTION)[0])  # (L, 3, 3): "(3, 4)\n", 3 rows, caption


def colour_of(token_id: int) -> tuple[int, ...]:
    return tuple(int(v) for v in PALETTE_RGB[token_id - FIRST_COLOR_ID])


def test_marked_positions_are_what_they_are_named(item):
    centres = item[:, 1, 1]
    marks = tour.marked_positions(centres)
    assert decode_text([centres[marks["shape character"]]]) == "3"  # of "(3, 4)"
    first = marks["first pixel"]
    assert centres[first] == GRID[0, 0] and not item[first, 0].any()  # nothing above it
    assert centres[marks["middle pixel"]] == GRID[1, 2]  # row 3 // 2 = 1, column 4 // 2 = 2
    assert centres[marks["end of a row"]] == ROW_SEP_ID
    assert item[marks["end of a row"], 1, 0] == GRID[1, 3]  # its left neighbour: the row's last pixel
    caption = marks["caption character"]
    assert part_index(centres)[caption] == 2 and tour.describe(centres[caption]) == "'g'"


def test_window_picture_cells_show_the_window_ids(item):
    scale, positions = 20, [1, 13, 16]  # a shape character, a pixel with pixels above, a '\t'
    picture = tour.window_picture(item, positions, scale=scale)
    assert picture.size == (len(positions) * 4 * scale, scale + 3 * scale + int(1.6 * scale))
    for n, p in enumerate(positions):
        for i in range(3):
            for j in range(3):
                x, y = n * 4 * scale + scale // 2 + j * scale, scale + i * scale
                t = int(item[p, i, j])
                if is_color(t):
                    assert picture.getpixel((x + scale // 2, y + scale // 2)) == colour_of(t)
                else:  # a text cell's corner is its background, the glyph is in the middle
                    background = tour.EMPTY if t == 0 else tour.TEXT_BG
                    assert picture.getpixel((x + scale // 5, y + scale // 5)) == background
    assert item[13, 0, 1] == GRID[0, 1] and item[16, 1, 1] == ROW_SEP_ID  # what was checked


def test_item_picture_lays_out_the_parts_and_frames_the_marks(item):
    scale, centres = 10, item[:, 1, 1]
    plain = tour.item_picture(centres, scale=scale)
    left = scale  # no marks: no letters in the margin

    def cell(row: int, col: int, picture=plain, x0: int = left, at: int = scale // 2) -> tuple[int, ...]:
        return picture.getpixel((x0 + col * scale + at, scale + row * scale + at))

    for i in range(3):  # the sprite starts at layout row 2, below the shape string and a gap
        for j in range(4):
            assert cell(2 + i, j) == colour_of(GRID[i, j])
    assert cell(1, 0) == (255, 255, 255)  # the blank row between parts
    assert cell(2 + 3 + 1, 0, at=2) == tour.TEXT_BG  # the caption, a row below the sprite's last
    end_of_row = int(np.flatnonzero(centres == ROW_SEP_ID)[0])
    marked = tour.item_picture(centres, [end_of_row], scale=scale)
    x0 = scale + int(1.2 * scale)  # one letter in the margin
    assert marked.getpixel((x0 + 4 * scale, scale + 2 * scale)) == tour.MARKS[0]  # its frame
    assert cell(3, 0, marked, x0) == colour_of(GRID[1, 0])
    assert centres[-1] == PART_END_ID


def test_vocabulary_picture_has_every_id_in_place():
    scale, columns = 12, 29
    picture = tour.vocabulary_picture(scale=scale, columns=columns)
    assert picture.size == (2 * scale + columns * scale + scale // 2, 4 * scale + scale)

    def corner(t: int) -> tuple[int, ...]:
        row, col = divmod(t, columns)
        return picture.getpixel((2 * scale + col * scale + 2, scale // 2 + row * scale + 2))

    assert corner(0) == tour.EMPTY and corner(40) == tour.TEXT_BG
    assert all(corner(t) == colour_of(t) for t in range(FIRST_COLOR_ID, 113))


def test_verdict_table_is_the_table_and_the_line_after_it():
    claims = ("# Claims\n\nRule: ...\n\n| claim | evidence | paper track |\n|---|---|---|\n"
              "| C1: x | y | **supported** |\n\nC8 (z): **contradicted**.\n\n## Every comparison\n\n"
              "| track | claim |\n")
    table = tour.verdict_table(claims)
    assert table.startswith("| claim |") and "C1: x" in table and "C8 (z)" in table
    assert "Rule" not in table and "Every comparison" not in table and "| track |" not in table
    assert tour.verdict_table("no table here\n") == "no table here\n"


def test_png_is_the_picture_losslessly():
    from io import BytesIO

    from PIL import Image

    picture = tour.vocabulary_picture(scale=8)
    again = Image.open(BytesIO(tour.png(picture)))
    assert again.format == "PNG" and again.convert("RGB").tobytes() == picture.tobytes()
