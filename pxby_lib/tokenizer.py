"""The PixelBytes vocabulary: 58 byte tokens then 55 palette colours, 113 ids in all.

The order is the reference's and must not change: the paper's cosine metric is computed
on raw ids. Text is normalised as the reference did (lower-case, Unicode NFKD, drop
non-ASCII) plus one safety rule of this project: every whitespace run becomes one space,
because a raw '\\t' or '\\n' inside a caption would be read as an image-row separator or
an end-of-part token. Characters that still have no id (e.g. '?', '&') are dropped and
counted, never mapped to a wrong id (the reference tokenizer silently mapped them to 0).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable

import numpy as np

BYTE_TOKENS: tuple[bytes, ...] = (
    (b"\x00", b"\t", b"\n", b" ", b'"', b"'", b"(", b")", b"*", b",", b"-", b"+", b".")
    + tuple(bytes([c]) for c in range(ord("0"), ord("9") + 1))
    + (b"\xc2", b"\xa0", b":", b"[", b"]", b";", b"/", b"%", b"!")
    + tuple(bytes([c]) for c in range(ord("a"), ord("z") + 1))
)
N_BYTE_TOKENS = 58
FIRST_COLOR_ID = 58
PAD_ID = 0
ROW_SEP_ID = 1  # '\t': ends every image row but the last
PART_END_ID = 2  # '\n': ends a part (shape string, image, caption)

_PALETTE_HEX = (
    "000000 fcfcfc f8f8f8 bcbcbc 7c7c7c a4e4fc 3cbcfc 0078f8 0000fc b8b8f8 "
    "6888fc 0058f8 0000bc d8b8f8 9878f8 6844fc 4428bc f8b8f8 f878f8 d800cc "
    "940084 f8a4c0 f85898 e40058 a80020 f0d0b0 f87858 f83800 a81000 fce0a8 "
    "fca044 e45c10 881400 f8d878 f8b800 ac7c00 503000 d8f878 b8f818 00b800 "
    "007800 b8f8b8 58d854 00a800 006800 b8f8d8 58f898 00a844 005800 00fcfc "
    "00e8d8 008888 004058 f8d8f8 787878"
).split()
PALETTE_RGB: np.ndarray = np.array(
    [[int(h[k : k + 2], 16) for k in (0, 2, 4)] for h in _PALETTE_HEX], dtype=np.uint8
)  # (55, 3)
N_COLORS = len(_PALETTE_HEX)
VOCAB_SIZE = N_BYTE_TOKENS + N_COLORS

assert len(BYTE_TOKENS) == N_BYTE_TOKENS and len(set(BYTE_TOKENS)) == N_BYTE_TOKENS
assert VOCAB_SIZE == 113 and PALETTE_RGB.shape == (55, 3)

# Characters a caption may contain: the printable byte tokens. Ids 0-2 are structure and
# ids 23/24 (0xC2, 0xA0) are UTF-8 halves that normalised ASCII text never produces.
TEXT_CHAR_TO_ID: dict[str, int] = {
    t.decode("ascii"): i for i, t in enumerate(BYTE_TOKENS) if i > PART_END_ID and t[0] < 0x80
}


def is_byte(token_id):
    """True for ids 0..57 (works on ints and numpy arrays)."""
    return (token_id >= 0) & (token_id < N_BYTE_TOKENS)


def is_color(token_id):
    """True for palette ids 58..112 (works on ints and numpy arrays)."""
    return (token_id >= FIRST_COLOR_ID) & (token_id < VOCAB_SIZE)


def _normalize(s: str, dropped: Counter | None) -> str:
    """Lower-case, NFKD, drop non-ASCII (counted), whitespace runs -> one space."""
    out = []
    for c in unicodedata.normalize("NFKD", s.lower()):
        if c.isspace():
            out.append(" ")
        elif c.isascii():
            out.append(c)
        elif not unicodedata.combining(c) and dropped is not None:
            dropped[c] += 1  # accents split off by NFKD are not worth counting
    return " ".join("".join(out).split())


def normalize_text(s: str) -> str:
    """The text the model sees, before out-of-vocabulary characters are dropped."""
    return _normalize(s, None)


def encode_text(s: str) -> tuple[np.ndarray, Counter]:
    """Text -> (uint8 ids, Counter of the characters dropped for having no id)."""
    dropped: Counter = Counter()
    kept = []
    for c in _normalize(s, dropped):
        if c in TEXT_CHAR_TO_ID:
            kept.append(c)
        else:
            dropped[c] += 1
    text = " ".join("".join(kept).split())  # a dropped char may leave a double space
    ids = np.fromiter((TEXT_CHAR_TO_ID[c] for c in text), dtype=np.uint8, count=len(text))
    return ids, dropped


def decode_text(ids: Iterable[int], errors: str = "strict") -> str:
    """Byte ids -> str. Colour ids raise ValueError, or become U+FFFD with errors='replace'."""
    out = bytearray()
    for i in ids:
        i = int(i)
        if 0 <= i < N_BYTE_TOKENS:
            out += BYTE_TOKENS[i]
        elif errors == "replace":
            out += "\ufffd".encode()
        else:
            raise ValueError(f"decode_text: id {i} is not a byte token (0..57)")
    return out.decode("utf-8", errors="replace")
