"""Pictures for the tour (notebooks/00_tour.ipynb): an item laid out as its windows see
it, and the 3x3 windows of a few of its positions.

A cell shows one id: a palette colour is filled with its colour, a text byte is its
character on pale yellow ('\\t' and '\\n' written out, a space as a small bracket), and
0 (nothing there: outside the part, or not seen yet) is grey. Marked positions are
lettered A, B, ... in both pictures, each with its own frame colour. `vocabulary_picture`
draws all 113 ids so; `verdict_table` cuts the verdict table out of a report's claims.md.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pxby_lib.render import token_places
from pxby_lib.sequence import decode_centres
from pxby_lib.tokenizer import (
    BYTE_TOKENS,
    FIRST_COLOR_ID,
    PALETTE_RGB,
    PART_END_ID,
    ROW_SEP_ID,
    VOCAB_SIZE,
    decode_text,
    is_color,
)

EMPTY = (190, 190, 190)  # id 0
TEXT_BG = (255, 244, 200)  # text bytes: pale yellow (the sprites have white pixels)
GRID = (120, 120, 120)
MARKS = ((230, 0, 126), (0, 114, 178), (213, 94, 0), (0, 158, 115), (120, 60, 200),
         (200, 160, 0))  # frame colour of the k-th marked position (A, B, ...)
LETTERS = "ABCDEFGHIJ"


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def describe(token_id: int) -> str:
    """A token in words: "colour 73", "'a'", "'\\t' (row end)", "'\\n' (part end)", "0 (nothing)"."""
    t = int(token_id)
    if is_color(t):
        return f"colour {t}"
    names = {0: "0 (nothing)", ROW_SEP_ID: "'\\t' (row end)", PART_END_ID: "'\\n' (part end)"}
    return names.get(t, repr(decode_text([t])))


def draw_cell(draw: ImageDraw.ImageDraw, x: int, y: int, size: int, token_id: int) -> None:
    """One id as a size x size cell with its top-left corner at (x, y)."""
    t, box = int(token_id), [x, y, x + size - 1, y + size - 1]
    if is_color(t):
        draw.rectangle(box, fill=tuple(int(v) for v in PALETTE_RGB[t - FIRST_COLOR_ID]), outline=GRID)
        return
    draw.rectangle(box, fill=EMPTY if t == 0 else TEXT_BG, outline=GRID)
    if t == 0:
        return
    byte = BYTE_TOKENS[t][0]
    if byte == 0x20:  # a space: a small bracket at the bottom of the cell
        left, right, low = x + size // 4, x + 3 * size // 4, y + 3 * size // 4
        draw.line([left, low - size // 8, left, low, right, low, right, low - size // 8],
                  fill="black", width=max(1, size // 14))
        return
    text = {ROW_SEP_ID: "\\t", PART_END_ID: "\\n"}.get(t, chr(byte) if byte < 0x80 else f"{byte:x}")
    font = _font(max(6, int(size * (0.5 if len(text) > 1 else 0.7))))
    draw.text((x + size / 2, y + size / 2), text, fill="black", font=font, anchor="mm")


def vocabulary_picture(scale: int = 24, columns: int = 29) -> Image.Image:
    """Every id, `columns` to a row, the first id of each row written at its left: the 58
    text bytes (0 = nothing; 0xc2 0xa0 are the halves of a UTF-8 no-break space), then
    the 55 palette colours (ids 58 to 112)."""
    rows, left = -(-VOCAB_SIZE // columns), 2 * scale
    image = Image.new("RGB", (left + columns * scale + scale // 2, rows * scale + scale), "white")
    draw = ImageDraw.Draw(image)
    for t in range(VOCAB_SIZE):
        row, col = divmod(t, columns)
        y = scale // 2 + row * scale
        draw_cell(draw, left + col * scale, y, scale, t)
        if col == 0:
            draw.text((left - scale // 4, y + scale / 2), str(t), fill="black",
                      font=_font(scale // 2), anchor="rm")
    return image


def marked_positions(centres: Sequence[int]) -> dict[str, int]:
    """Five positions worth looking at: a character of the shape string, the sprite's
    first pixel (nothing above it), a pixel in its middle, the '\\t' ending that middle
    row, and the first letter of the caption from its fifth character on. Name -> position."""
    c = np.asarray(centres)
    ends = np.flatnonzero(c == PART_END_ID)
    height, width = decode_centres(c).shape  # a readable shape string, or TypeError
    start, mid = int(ends[0]) + 1, height // 2
    caption = range(min(int(ends[1]) + 5, int(ends[2])), int(ends[2]))
    letter = next((k for k in caption if decode_text([c[k]]).isalpha()), int(ends[2]))
    return {"shape character": 1, "first pixel": start,
            "middle pixel": start + mid * (width + 1) + width // 2,
            "end of a row": start + mid * (width + 1) + width, "caption character": letter}


def item_picture(centres: Sequence[int], marks: Sequence[int] = (), scale: int = 16) -> Image.Image:
    """The item as the windows see it: the shape string, the sprite rows and the caption,
    each part a grid of cells with its '\\t' and '\\n' cells, parts one blank row apart.
    The caption (one long row) is cut at the sprite's width. `marks` (positions) get a
    frame and, in the left margin of their row, a letter (A, B, ...)."""
    c = np.asarray(centres).astype(np.int64)  # (L,)
    places = token_places(c)  # (part, row, col) of each position
    sprite_rows = max(r for p, r, _ in places if p == 1) + 1
    sprite_width = max(col for p, _, col in places if p == 1)  # its '\\t' column's index
    first_row = {0: 0, 1: 2, 2: 3 + sprite_rows}  # the layout row where each part starts
    columns = max(col for p, _, col in places if p < 2) + 1  # the sprite's width + 1
    at = [(first_row[p] + r, col) for p, r, col in places]  # (layout row, col) of each position
    per_row = [sum(at[k][0] == at[m][0] for m in marks) for k in marks]
    tag, font = int(1.2 * scale), _font(scale * 3 // 4)
    left = scale + tag * max(per_row, default=0)
    caption_len = sum(p == 2 for p, _, _ in places)  # its '\\n' included
    notes = {0: "shape string", first_row[1]: f"sprite: {sprite_rows} rows of {sprite_width} pixels",
             first_row[2]: f"caption: {caption_len} cells"
                           + (f", the first {columns} shown" if caption_len > columns else "")}
    width = left + columns * scale + scale // 2 + max(int(font.getlength(n)) for n in notes.values())
    image = Image.new("RGB", (width + scale, (first_row[2] + 3) * scale), "white")
    draw = ImageDraw.Draw(image)
    for k, (row, col) in enumerate(at):
        if col < columns:
            draw_cell(draw, left + col * scale, scale + row * scale, scale, c[k])
    for row, note in notes.items():
        draw.text((left + columns * scale + scale // 2, scale + (row + 0.5) * scale), note,
                  fill="black", font=font, anchor="lm")
    slots: dict[int, int] = {}
    for n, k in enumerate(marks):
        (row, col), colour = at[k], MARKS[n % len(MARKS)]
        x, y = left + col * scale, scale + row * scale
        draw.rectangle([x - 2, y - 2, x + scale + 1, y + scale + 1], outline=colour, width=3)
        slots[row] = slots.get(row, 0) + 1  # the row's letters, left to right in mark order
        draw.text((left - (per_row[n] - slots[row] + 1) * tag + tag // 2, y + scale / 2),
                  LETTERS[n], fill=colour, font=_font(scale), anchor="mm")
    return image


def window_picture(windows: np.ndarray, positions: Sequence[int], scale: int = 40,
                   names: Sequence[str] | None = None) -> Image.Image:
    """The 3x3 window of each position (windows: (L, 3, 3) ids) side by side, lettered as
    in `item_picture`, the centre framed, its token (and `names[n]`) written under it.
    Each panel is 4 * scale wide; the picture is (1 + 3 + 1.6) * scale high."""
    font, small = _font(max(8, scale * 2 // 5)), _font(max(7, scale * 3 // 10))
    panel, top = 4 * scale, scale
    image = Image.new("RGB", (len(positions) * panel, top + 3 * scale + int(1.6 * scale)), "white")
    draw = ImageDraw.Draw(image)
    for n, p in enumerate(positions):
        x0, colour = n * panel + scale // 2, MARKS[n % len(MARKS)]
        draw.text((x0, top // 2), f"{LETTERS[n]}: position {p}", fill=colour, font=font, anchor="lm")
        for i in range(3):
            for j in range(3):
                draw_cell(draw, x0 + j * scale, top + i * scale, scale, windows[p, i, j])
        draw.rectangle([x0 + scale - 1, top + scale - 1, x0 + 2 * scale, top + 2 * scale],
                       outline=colour, width=3)
        lines = [f"centre {describe(windows[p, 1, 1])}"] + ([names[n]] if names else [])
        for k, line in enumerate(lines):
            draw.text((x0, top + 3 * scale + scale // 3 + k * scale // 2), line, fill="black",
                      font=small)
    return image


def png(picture: Image.Image) -> bytes:
    """A picture as PNG bytes: what the tour displays (IPython would add a lossy JPEG
    copy of a PIL image, blurring the cells)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def verdict_table(claims_md: str) -> str:
    """The verdict table of a report's claims.md (and the C8 line after it): the lines from
    its header ('| claim |') to the first heading after it; the whole text if it has none."""
    lines = claims_md.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith("| claim |")), None)
    if start is None:
        return claims_md
    end = next((k for k in range(start, len(lines)) if lines[k].startswith("#")), len(lines))
    return "\n".join(lines[start:end]).strip() + "\n"
