"""Pictures of items: the sprite upscaled (nearest) with its caption wrapped below.

Generated sequences may be malformed (no image part, ragged rows, bytes inside the
image, colours inside the caption): `sequence.decode_centres` never raises on them and
this module draws whatever is there, with a placeholder box where the image is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from pxby_lib.generate import generate
from pxby_lib.sequence import DecodedItem, decode_centres
from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
PLACEHOLDER = (210, 210, 210)
GENERATED = (220, 0, 120)  # marks generated tokens: a frame on pixels, colour + underline on text
MARGIN = 8
MIN_WIDTH = 240  # px: room for a readable caption column under small sprites
FONT_SIZE = 14  # px: legible at 100 % zoom (PIL's scalable default font)


def _as_ids(item: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(item)
    if ids.ndim == 3 and ids.shape[1:] == (3, 3):  # windows were passed: use their centres
        ids = ids[:, 1, 1]
    return ids.ravel().astype(np.int64)


def _as_decoded(item: Sequence[int] | np.ndarray | DecodedItem) -> DecodedItem:
    return item if isinstance(item, DecodedItem) else decode_centres(_as_ids(item))


def token_places(centre_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(part, row, col) of every token, as `decode_centres` lays the parts out; for the
    caption, col counts the characters before it (rows are joined there)."""
    places, part, row, col, chars = [], 0, 0, 0, 0
    for t in (int(v) for v in centre_ids):
        places.append((part, row, chars if part == 2 else col))
        if t == ROW_SEP_ID:
            row, col = row + 1, 0
        elif t == PART_END_ID:
            part, row, col, chars = part + 1, 0, 0, 0
        else:
            col += 1
            chars += 1
    return places


def _placeholder(size: int) -> Image.Image:
    """A grey box with a cross: the sequence has no image to show."""
    box = Image.new("RGB", (size, size), PLACEHOLDER)
    draw = ImageDraw.Draw(box)
    draw.rectangle([0, 0, size - 1, size - 1], outline=INK)
    draw.line([0, 0, size - 1, size - 1], fill=INK)
    draw.line([0, size - 1, size - 1, 0], fill=INK)
    return box


def _printable(text: str) -> str:
    """Caption text safe for the font: control and replacement chars become '?'."""
    return "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)


def _wrap(text: str, width: int) -> list[tuple[int, str]]:
    """Lines of at most `width` chars, broken at spaces: (offset of the line, line)."""
    lines, start = [], 0
    while start < len(text):
        end = min(len(text), start + width)
        if end < len(text):
            cut = text.rfind(" ", start, end + 1)
            end = cut if cut > start else end
        lines.append((start, text[start:end]))
        start = end + 1 if end < len(text) and text[end] == " " else end
    return lines or [(0, "")]


def render_item(
    centres_or_decoded: Sequence[int] | np.ndarray | DecodedItem,
    scale: int = 8,
    title: str | None = None,
    generated: Sequence[bool] | np.ndarray | None = None,
    prompt_rows: int | None = None,
) -> Image.Image:
    """Sprite (nearest-upscaled by `scale`) with an optional title above and the caption below.

    Accepts centre ids (L,), windows (L, 3, 3) or a DecodedItem. A missing or empty image
    part is drawn as a placeholder box; non-colour cells of the image are white.
    `generated` (L,) marks the tokens a model generated (with centre ids or windows):
    their pixels get a frame, their caption characters colour and an underline.
    `prompt_rows` (a completion: everything below them generated) draws a line under the
    sprite's first prompt_rows rows instead, and leaves the pixels unframed.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    decoded = _as_decoded(centres_or_decoded)
    marks = {}
    if generated is not None:
        ids = _as_ids(centres_or_decoded)
        if len(generated) != len(ids):
            raise ValueError(f"generated has {len(generated)} flags for {len(ids)} tokens")
        marks = {place for place, g in zip(token_places(ids), generated, strict=True) if g}
    rgb = decoded.image_rgb
    if rgb is None or rgb.size == 0:
        sprite = _placeholder(25 * scale)
    else:
        h, w = rgb.shape[:2]
        sprite = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
        sprite = sprite.resize((w * scale, h * scale), Image.Resampling.NEAREST)
        frame = ImageDraw.Draw(sprite)
        for part, i, j in marks:
            if part == 1 and i < h and j < w and scale >= 3:
                frame.rectangle([j * scale, i * scale, (j + 1) * scale - 1, (i + 1) * scale - 1],
                                outline=GENERATED)

    font = ImageFont.load_default(size=FONT_SIZE)
    width = max(sprite.width, MIN_WIDTH) + 2 * MARGIN
    sample = "abcdefghijklmnopqrstuvwxyz ,."
    char_w = max(1.0, font.getlength(sample) / len(sample) * 1.1)  # mean width, 10 % slack
    line_h = FONT_SIZE + 5
    caption = _printable(decoded.caption) or "(no caption)"
    lines = _wrap(caption, max(8, int((width - 2 * MARGIN) // char_w)))
    title_h = line_h + MARGIN if title else 0
    height = MARGIN + title_h + sprite.height + MARGIN + len(lines) * line_h + MARGIN

    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    if title:
        draw.text((MARGIN, y), _printable(title), fill=INK, font=font)
        y += title_h
    left = (width - sprite.width) // 2
    canvas.paste(sprite, (left, y))
    if prompt_rows is not None:
        line_y = y + prompt_rows * scale
        draw.line([left - MARGIN // 2, line_y, left + sprite.width + MARGIN // 2, line_y],
                  fill=GENERATED, width=2)
    y += sprite.height + MARGIN
    for offset, line in lines:
        x = MARGIN
        for k, char in enumerate(line):
            mine = (2, 0, offset + k) in marks
            draw.text((x, y), char, fill=GENERATED if mine else INK, font=font)
            advance = font.getlength(char)
            if mine:
                draw.line([x, y + FONT_SIZE + 1, x + advance, y + FONT_SIZE + 1], fill=GENERATED)
            x += advance
        y += line_h
    return canvas


def render_comparison(
    original_centres: Sequence[int] | np.ndarray | DecodedItem,
    generated_centres: Sequence[int] | np.ndarray | DecodedItem,
    scale: int = 8,
    titles: tuple[str, str] = ("original", "generated"),
    generated: Sequence[bool] | np.ndarray | None = None,
) -> Image.Image:
    """Original | generated side by side (the generated-sample panel of Figure 1);
    `generated` marks the generated tokens of the right-hand sequence."""
    left = render_item(original_centres, scale=scale, title=titles[0])
    right = render_item(generated_centres, scale=scale, title=titles[1], generated=generated)
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), BACKGROUND)
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    ImageDraw.Draw(canvas).line([left.width, 0, left.width, canvas.height], fill=PLACEHOLDER)
    return canvas


@torch.no_grad()
def interleaved_generation(model: nn.Module, windows: np.ndarray, *, prompt_len: int,
                           truth_block: int = 32, gen_block: int = 8,
                           device: str | torch.device = "cpu",
                           incremental: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The paper's Figure 1 sample (spec section 13) over one item's full length.

    After `prompt_len` true windows, `gen_block` generated tokens alternate with
    `truth_block` true ones. Returns the (L,) centre ids (true where given, generated
    elsewhere) and the (L,) mask of the generated ones. (The reference predicted each
    block before appending the preceding truth block: a quirk, not copied.)
    """
    truth = windows[:, 1, 1].astype(np.int64)  # (L,)
    seq, centres = [windows[:prompt_len]], list(truth[:prompt_len])
    pos = min(prompt_len, len(truth))
    while pos < len(truth):
        n_new = min(gen_block, len(truth) - pos)
        out = generate(model, np.concatenate(seq)[None], [centres], n_new, device=device,
                       incremental=incremental)
        seq.append(out.windows[0])
        centres += out.ids[0].tolist()
        pos += n_new
        take = min(truth_block, len(truth) - pos)
        if take > 0:
            seq.append(windows[pos:pos + take])
            centres += truth[pos:pos + take].tolist()
            pos += take
    ids = np.asarray(centres, dtype=np.int64)
    generated = np.ones(len(ids), dtype=bool)
    given = np.arange(len(ids))
    after = given - prompt_len
    generated[given < prompt_len] = False
    generated[(after >= 0) & (after % (gen_block + truth_block) >= gen_block)] = False
    return ids, generated


def continuation_picture(model: nn.Module, windows: np.ndarray, *, prompt_len: int,
                         truth_block: int = 32, gen_block: int = 8, device="cpu", scale: int = 8,
                         incremental: bool = True) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Original | interleaved generation of one item (generated tokens marked), titled with
    its schedule; also returns `interleaved_generation`'s (ids, generated mask)."""
    ids, generated = interleaved_generation(model, windows, prompt_len=prompt_len,
                                            truth_block=truth_block, gen_block=gen_block,
                                            device=device, incremental=incremental)
    title = f"prompt {prompt_len}, then {gen_block} generated / {truth_block} true"
    picture = render_comparison(windows[:, 1, 1], ids, scale=scale, titles=("original", title),
                                generated=generated)
    return picture, ids, generated
