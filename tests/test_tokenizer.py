"""The 113-id vocabulary and text normalisation (spec sections 2 and 3)."""

from collections import Counter

import numpy as np
import pytest

from pxby_lib import tokenizer as tk

# The spec's palette, copied independently of the module (order = ids 58..112).
SPEC_PALETTE = """000000 fcfcfc f8f8f8 bcbcbc 7c7c7c a4e4fc 3cbcfc 0078f8 0000fc b8b8f8
6888fc 0058f8 0000bc d8b8f8 9878f8 6844fc 4428bc f8b8f8 f878f8 d800cc
940084 f8a4c0 f85898 e40058 a80020 f0d0b0 f87858 f83800 a81000 fce0a8
fca044 e45c10 881400 f8d878 f8b800 ac7c00 503000 d8f878 b8f818 00b800
007800 b8f8b8 58d854 00a800 006800 b8f8d8 58f898 00a844 005800 00fcfc
00e8d8 008888 004058 f8d8f8 787878""".split()


def test_sizes_and_constants():
    assert tk.VOCAB_SIZE == 113 and tk.N_BYTE_TOKENS == 58 and tk.FIRST_COLOR_ID == 58
    assert len(tk.BYTE_TOKENS) == 58 and all(len(b) == 1 for b in tk.BYTE_TOKENS)
    assert len(set(tk.BYTE_TOKENS)) == 58
    assert tk.PALETTE_RGB.shape == (55, 3) and tk.PALETTE_RGB.dtype == np.uint8
    assert (tk.PAD_ID, tk.ROW_SEP_ID, tk.PART_END_ID) == (0, 1, 2)


@pytest.mark.parametrize("token_id, byte", [
    (0, b"\x00"), (1, b"\t"), (2, b"\n"), (3, b" "), (4, b'"'), (5, b"'"), (6, b"("),
    (7, b")"), (8, b"*"), (9, b","), (10, b"-"), (11, b"+"), (12, b"."), (13, b"0"),
    (17, b"4"), (22, b"9"), (23, b"\xc2"), (24, b"\xa0"), (25, b":"), (26, b"["),
    (27, b"]"), (28, b";"), (29, b"/"), (30, b"%"), (31, b"!"), (32, b"a"), (36, b"e"),
    (44, b"m"), (50, b"s"), (57, b"z"),
])
def test_byte_ids(token_id, byte):
    assert tk.BYTE_TOKENS[token_id] == byte


def test_palette_order_matches_spec():
    hexes = [bytes(rgb).hex() for rgb in tk.PALETTE_RGB]
    assert hexes == SPEC_PALETTE
    assert tuple(tk.PALETTE_RGB[66 - 58]) == (0x00, 0x00, 0xFC)  # id 66 = 0000fc
    assert tuple(tk.PALETTE_RGB[112 - 58]) == (0x78, 0x78, 0x78)


def test_is_color_and_is_byte_boundaries():
    ids = np.array([0, 57, 58, 112, 113])
    assert tk.is_byte(ids).tolist() == [True, True, False, False, False]
    assert tk.is_color(ids).tolist() == [False, False, True, True, False]
    assert tk.is_color(58) and not tk.is_color(57) and tk.is_byte(0)


def test_encode_exact_ids_and_normalisation():
    ids, dropped = tk.encode_text("Pokémon (No. 1): 25%!")
    expected = [47, 46, 42, 36, 44, 46, 45, 3, 6, 45, 46, 12, 3, 14, 7, 25, 3, 15, 18, 30, 31]
    assert ids.dtype == np.uint8 and ids.tolist() == expected
    assert dropped == Counter()
    assert tk.decode_text(ids) == "pokemon (no. 1): 25%!"


def test_whitespace_and_nbsp_become_single_spaces():
    ids, _ = tk.encode_text("a\u00a0b\tc\nd  e ")
    assert tk.decode_text(ids) == "a b c d e"
    assert not set(ids.tolist()) & {0, 1, 2, 23, 24}  # no structure / UTF-8-half ids in text


def test_unknown_characters_are_dropped_and_counted():
    ids, dropped = tk.encode_text("Why? Fish & chips \u2014 yes\u00b0\x00")
    assert tk.decode_text(ids) == "why fish chips yes"
    assert dropped == Counter({"?": 1, "&": 1, "\u2014": 1, "\u00b0": 1, "\x00": 1})
    assert 0 not in ids.tolist()  # never a silently wrong id


def test_empty_and_only_unknown_text():
    ids, dropped = tk.encode_text("")
    assert ids.shape == (0,) and not dropped
    ids, dropped = tk.encode_text("?? & ##")
    assert ids.shape == (0,) and dropped == Counter({"?": 2, "&": 1, "#": 2})


def test_normalize_text_keeps_out_of_vocab_ascii():
    assert tk.normalize_text("  Café  AU\tLAIT? ") == "cafe au lait?"


def test_decode_text_colour_ids():
    with pytest.raises(ValueError, match="not a byte token"):
        tk.decode_text([32, 58])
    assert tk.decode_text([32, 58, 33], errors="replace") == "a\ufffdb"
    assert tk.decode_text([23, 24]) == "\u00a0"  # the two UTF-8 halves of a nbsp
