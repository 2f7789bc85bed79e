"""One item as a sequence of 3x3 windows (spec section 5), decoding, and the
incremental window builder used in generation (spec section 10).

An item is three parts: the shape string str((H, W)) as text, the image grid, the
caption. Each part is a 2-D grid A of ids (text is one row) with a separator column
appended (every row ends with '\\t' except the last, which ends with '\\n'), zero-padded
outside its borders and read in raster order. Position (i, j) becomes

    [[A[i-1,j-1], A[i-1,j], A[i-1,j+1]],
     [A[i,  j-1], A[i,  j], 0         ],
     [0,          0,        0         ]]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pxby_lib.pixels import grid_to_rgb
from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID, decode_text, encode_text, is_color

PART_NAMES = ("shape", "image", "caption")


def encode_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Parts (2-D id grids, without separators) -> (L, 3, 3) uint8 windows."""
    out = []
    for k, part in enumerate(parts):
        part = np.asarray(part)
        if part.ndim != 2 or part.shape[0] == 0:
            raise ValueError(f"encode_parts: part {k} must be a 2-D grid with at least one "
                             f"row, got shape {part.shape}")
        h, w = part.shape
        sep = np.full((h, 1), ROW_SEP_ID, dtype=np.uint8)
        sep[-1] = PART_END_ID
        padded = np.zeros((h + 1, w + 3), dtype=np.uint8)  # 1 row on top, 1 col each side
        padded[1:, 1 : w + 2] = np.hstack([part.astype(np.uint8), sep])
        win = np.lib.stride_tricks.sliding_window_view(padded, (2, 3))  # (h, w+1, 2, 3)
        windows = np.zeros((h, w + 1, 3, 3), dtype=np.uint8)
        windows[:, :, :2] = win
        windows[:, :, 1, 2] = 0  # the right neighbour is the future: never seen
        out.append(windows.reshape(-1, 3, 3))
    return np.concatenate(out)  # (L, 3, 3)


def shape_ids(height: int, width: int) -> np.ndarray:
    """The shape part's text, str((H, W)), as ids."""
    ids, dropped = encode_text(str((int(height), int(width))))
    assert not dropped
    return ids


def encode_item(grid: np.ndarray, caption_ids: np.ndarray) -> np.ndarray:
    """(H, W) colour ids + caption ids -> (L, 3, 3) uint8 windows (shape, image, caption)."""
    grid = np.asarray(grid)
    caption_ids = np.asarray(caption_ids, dtype=np.int64).ravel()
    if grid.ndim != 2 or grid.size == 0 or not is_color(grid).all():
        raise ValueError(f"encode_item: grid must be a non-empty 2-D array of colour ids "
                         f"(58..112), got shape {grid.shape}")
    if caption_ids.size and ((caption_ids <= PART_END_ID) | (caption_ids >= 58)).any():
        raise ValueError("encode_item: caption ids must be text bytes (3..57); "
                         "build them with tokenizer.encode_text")
    caption = caption_ids.astype(np.uint8)[None]  # (1, n); an empty caption is just '\n'
    return encode_parts([shape_ids(*grid.shape)[None], grid, caption])


def centres(windows: np.ndarray) -> np.ndarray:
    """(..., L, 3, 3) -> (..., L) centre ids."""
    return windows[..., 1, 1]


def part_index(centre_ids: Sequence[int]) -> np.ndarray:
    """(L,) int8: 0 shape, 1 image, 2 caption = number of '\\n' strictly before, mod 3."""
    ends = np.asarray(centre_ids) == PART_END_ID
    before = np.cumsum(ends) - ends
    return (before % 3).astype(np.int8)


@dataclass
class DecodedItem:
    """What a centre-id sequence says. `parts`: per part, its rows of ids without
    separators; a trailing part without its '\\n' is included. `problems` lists every
    structural oddity found (empty for a well-formed item)."""

    shape: tuple[int, int] | None
    grid: np.ndarray | None  # (H, W) ids, ragged rows padded with 0
    image_rgb: np.ndarray | None  # (H, W, 3); non-colour cells white
    caption: str
    parts: list[list[np.ndarray]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def split_parts(centre_ids: Sequence[int]) -> tuple[list[list[np.ndarray]], bool]:
    """Centre ids -> (parts as lists of rows, whether the last part ended with '\\n')."""
    parts, rows, row = [], [], []
    for t in (int(v) for v in centre_ids):
        if t == ROW_SEP_ID:
            rows.append(np.array(row, dtype=np.uint8))
            row = []
        elif t == PART_END_ID:
            rows.append(np.array(row, dtype=np.uint8))
            parts.append(rows)
            rows, row = [], []
        else:
            row.append(t)
    complete = not rows and not row
    if not complete:
        rows.append(np.array(row, dtype=np.uint8))
        parts.append(rows)
    return parts, complete


def _part_text(rows: list[np.ndarray], name: str, problems: list[str]) -> str:
    if len(rows) > 1:
        problems.append(f"{name}: {len(rows)} rows, text has one (rows joined)")
    ids = np.concatenate(rows) if rows else np.zeros(0, np.uint8)
    if is_color(ids).any():
        problems.append(f"{name}: contains colour ids (shown as U+FFFD)")
    return decode_text(ids, errors="replace")


def decode_centres(centre_ids: Sequence[int]) -> DecodedItem:
    """Centre ids of one item -> shape, grid, image, caption; never raises on bad input."""
    parts, complete = split_parts(centre_ids)
    problems: list[str] = []
    if not complete:
        problems.append(f"part {len(parts) - 1} has no closing '\\n'")
    if len(parts) != 3:
        problems.append(f"{len(parts)} parts, expected 3 (shape, image, caption)")
    shape = None
    if parts:
        text = _part_text(parts[0], "shape", problems)
        m = re.fullmatch(r"\((\d+), (\d+)\)", text)
        if m:
            shape = (int(m[1]), int(m[2]))
        else:
            problems.append(f"shape: {text!r} is not '(H, W)'")
    grid = image_rgb = None
    if len(parts) > 1:
        rows = parts[1]
        width = max(len(r) for r in rows)
        grid = np.zeros((len(rows), width), dtype=np.uint8)
        for i, r in enumerate(rows):
            grid[i, : len(r)] = r
        if len({len(r) for r in rows}) > 1:
            problems.append(f"image: ragged rows {sorted({len(r) for r in rows})} padded with 0")
        if not is_color(grid).all():
            problems.append("image: contains non-colour ids (shown white)")
        if shape is not None and grid.shape != shape:
            problems.append(f"image: grid {grid.shape} differs from shape string {shape}")
        image_rgb = grid_to_rgb(grid, fill=(255, 255, 255))
    caption = _part_text(parts[2], "caption", problems) if len(parts) > 2 else ""
    return DecodedItem(shape, grid, image_rgb, caption, parts, problems)


class WindowBuilder:
    """Rebuilds windows token by token from centre ids with the clean rules of section 10:
    rows end at '\\t', a part ends at '\\n', the row above is the previous row of the same
    part (with its separator), missing neighbours are 0. push() is O(1).

    `context`: the centre ids before the first pushed token. Only the current part's last
    two rows matter, so it must reach back to the start of the previous row (or of the
    part); anything older is ignored."""

    def __init__(self, context: Sequence[int] = ()):
        # the state that pushing `context` token by token would leave (what _advance does),
        # read off the separators at once: only the current part's last two rows matter
        part = np.asarray(context, dtype=np.int64).reshape(-1)
        ends = np.flatnonzero(part == PART_END_ID)
        if len(ends):
            part = part[ends[-1] + 1 :]
        seps = np.flatnonzero(part == ROW_SEP_ID)
        above_start = seps[-2] + 1 if len(seps) >= 2 else 0
        # previous row of the current part, separator included; the current row so far
        self.above: list[int] = part[above_start : seps[-1] + 1].tolist() if len(seps) else []
        self.row: list[int] = part[seps[-1] + 1 :].tolist() if len(seps) else part.tolist()

    def _advance(self, token_id: int) -> None:
        self.row.append(token_id)
        if token_id == ROW_SEP_ID:
            self.above, self.row = self.row, []
        elif token_id == PART_END_ID:
            self.above, self.row = [], []

    def next_window(self) -> np.ndarray:
        """The window (3, 3) uint8 the next token will get, its centre left 0: everything
        the 3x3 neighbourhood says about the next position before it is known."""
        j, above = len(self.row), self.above
        window = np.zeros((3, 3), dtype=np.uint8)
        if j >= 1 and j - 1 < len(above):
            window[0, 0] = above[j - 1]
        if j < len(above):
            window[0, 1] = above[j]
        if j + 1 < len(above):
            window[0, 2] = above[j + 1]
        if j >= 1:
            window[1, 0] = self.row[-1]
        return window

    def push(self, token_id: int) -> np.ndarray:
        """Window (3, 3) uint8 of the pushed token, then advance the state."""
        token_id = int(token_id)
        window = self.next_window()
        window[1, 1] = token_id
        self._advance(token_id)
        return window


def windows_from_centres(centre_ids: Sequence[int], context: Sequence[int] = ()) -> np.ndarray:
    """(n,) centre ids -> (n, 3, 3) uint8 windows, pushing each into a WindowBuilder."""
    builder = WindowBuilder(context)
    out = np.zeros((len(centre_ids), 3, 3), dtype=np.uint8)
    for i, t in enumerate(centre_ids):
        out[i] = builder.push(t)
    return out
