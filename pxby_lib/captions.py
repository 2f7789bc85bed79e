"""Captions: the text part of an item, built from a source's records (spec section 15).

Pokemon: the distinct Pokedex entries of a species, in game order, capped on a sentence
or word boundary (`build_caption`). Emoji: the name, category, subcategory and tags in
a fixed order (`emoji_caption`). Both are then normalised by the tokenizer's rules
(lower case, NFKD, ASCII, characters outside the 58 byte tokens dropped and counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Chosen so that text is about half of all tokens on the Pokemon snapshot: measured text
# share 0.499 at 630 (0.459 at 512, 0.506 at 650); the data report says it again.
DEFAULT_MAX_CHARS = 630

# Typographic punctuation of the pokedex texts, folded to ASCII before the tokenizer drops
# non-ASCII: dropping an em dash glues "nest\u2014this" into one word.
_ASCII_PUNCTUATION = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                                    "\u2014": " - ", "\u2013": "-"})


def build_caption(entries: Sequence[str], max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """Distinct entries in order, joined by a space, capped at max_chars on a boundary.

    Typographic quotes and dashes become ASCII first (the only change to the texts).

    The cut keeps whole sentences when the last sentence end within the cap keeps at least
    half of it, else it cuts at the last space; never mid-word (a first word longer than
    the cap is kept whole).
    """
    texts: list[str] = []
    for entry in entries:
        t = " ".join(str(entry).translate(_ASCII_PUNCTUATION).split())
        if t and t not in texts:
            texts.append(t)
    text = " ".join(texts)
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 1:
        raise ValueError(f"build_caption: max_chars must be >= 1 or None, got {max_chars}")
    head = text[: max_chars + 1]  # one char more: a space there means a clean cut
    sentence_ends = [m.end() for m in re.finditer(r"[.!?][\"')]*(?= )", head)]
    if sentence_ends and sentence_ends[-1] >= max_chars // 2:
        return text[: sentence_ends[-1]]
    cut = head.rfind(" ")
    return text[:cut].rstrip() if cut > 0 else text.split(" ")[0]




def emoji_caption(record: dict, max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """`<name>. <category>, <subcategory>. <short names>.` in that fixed order.

    Short names are identifiers: their '_' become spaces ("smiling_face" -> "smiling
    face"), and a short name that only repeats the name is left out. Typographic quotes
    become ASCII (as for Pokemon); everything else is left to the tokenizer, which lower-
    cases, strips accents ("Côte" -> "cote") and drops what it has no id for ('&', '#').
    Capped at max_chars like `build_caption`."""
    name = " ".join(str(record["name"]).translate(_ASCII_PUNCTUATION).split())
    shorts = []
    for short in record.get("short_names") or []:
        words = " ".join(str(short).replace("_", " ").split())
        if words and words.lower() != name.lower() and words not in shorts:
            shorts.append(words)
    text = f"{name}. {record['category']}, {record['subcategory']}."
    if shorts:
        text += f" {', '.join(shorts)}."
    return build_caption([text], max_chars)
