"""Pictures of items: the sprite upscaled (nearest) with its caption wrapped below.

Generated sequences may be malformed (no image part, ragged rows, bytes inside the
image, colours inside the caption): `sequence.decode_centres` never raises on them and
this module draws whatever is there, with a placeholder box where the image is missing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pxby_lib.sequence import DecodedItem, decode_centres

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
PLACEHOLDER = (210, 210, 210)
MARGIN = 8
MIN_WIDTH = 200  # px: room for a readable caption column under small sprites


def _as_decoded(item: Sequence[int] | np.ndarray | DecodedItem) -> DecodedItem:
    if isinstance(item, DecodedItem):
        return item
    ids = np.asarray(item)
    if ids.ndim == 3 and ids.shape[1:] == (3, 3):  # windows were passed: use their centres
        ids = ids[:, 1, 1]
    return decode_centres(ids.ravel())


def _placeholder(size: int) -> Image.Image:
    """A grey box with a cross: the sequence has no image to show."""
    box = Image.new("RGB", (size, size), PLACEHOLDER)
    draw = ImageDraw.Draw(box)
    draw.rectangle([0, 0, size - 1, size - 1], outline=INK)
    draw.line([0, 0, size - 1, size - 1], fill=INK)
    draw.line([0, size - 1, size - 1, 0], fill=INK)
    return box


def _printable(text: str) -> str:
    """Caption text safe for the default font: control and replacement chars become '?'."""
    return "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)


def render_item(
    centres_or_decoded: Sequence[int] | np.ndarray | DecodedItem,
    scale: int = 8,
    title: str | None = None,
) -> Image.Image:
    """Sprite (nearest-upscaled by `scale`) with an optional title above and the caption below.

    Accepts centre ids (L,), windows (L, 3, 3) or a DecodedItem. A missing or empty image
    part is drawn as a placeholder box; non-colour cells of the image are white.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    decoded = _as_decoded(centres_or_decoded)
    rgb = decoded.image_rgb
    if rgb is None or rgb.size == 0:
        sprite = _placeholder(25 * scale)
    else:
        h, w = rgb.shape[:2]
        sprite = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
        sprite = sprite.resize((w * scale, h * scale), Image.Resampling.NEAREST)

    font = ImageFont.load_default()
    width = max(sprite.width, MIN_WIDTH) + 2 * MARGIN
    sample = "abcdefghijklmnopqrstuvwxyz ,."
    char_w = max(1.0, font.getlength(sample) / len(sample) * 1.1)  # mean width, 10 % slack
    line_h = font.getbbox("Ay")[3] + 3
    chars_per_line = max(8, int((width - 2 * MARGIN) // char_w))
    caption = _printable(decoded.caption) or "(no caption)"
    lines = textwrap.wrap(caption, chars_per_line) or [""]
    title_h = line_h + MARGIN if title else 0
    height = MARGIN + title_h + sprite.height + MARGIN + len(lines) * line_h + MARGIN

    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    if title:
        draw.text((MARGIN, y), _printable(title), fill=INK, font=font)
        y += title_h
    canvas.paste(sprite, ((width - sprite.width) // 2, y))
    y += sprite.height + MARGIN
    for line in lines:
        draw.text((MARGIN, y), line, fill=INK, font=font)
        y += line_h
    return canvas


def render_comparison(
    original_centres: Sequence[int] | np.ndarray | DecodedItem,
    generated_centres: Sequence[int] | np.ndarray | DecodedItem,
    scale: int = 8,
    titles: tuple[str, str] = ("original", "generated"),
) -> Image.Image:
    """Original | generated side by side (the generated-sample panel of Figure 1)."""
    left = render_item(original_centres, scale=scale, title=titles[0])
    right = render_item(generated_centres, scale=scale, title=titles[1])
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), BACKGROUND)
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    ImageDraw.Draw(canvas).line([left.width, 0, left.width, canvas.height], fill=PLACEHOLDER)
    return canvas
