"""The Twemoji snapshot, the second dataset: `data/emoji` (openly licensed).

`build_emoji` (`python -m pxby_lib.sources emoji [--out data/emoji] [--cache DIR]`)
rebuilds it from the pinned npm package `emoji-datasource-twitter@16.0.0`: its
`emoji.json` (1,911 emoji: name, short names, category, subcategory, sort order) and
`img/twitter/64/<image>`, the 64x64 RGBA Twemoji image of each. One item per emoji:
the base image only (the skin-tone variants of `skin_variations` are left out), and the
"Component" category (the skin-tone swatches and hair components, which are parts of
other emoji, not emoji) is left out. Images are copied byte for byte, in sort order.

Licences: the Twemoji graphics are (c) Twitter, Inc and other contributors, licensed
under CC-BY 4.0 (attribution in LICENSE-DATA.md of the snapshot and in the README);
the emoji data (names, categories) is emoji-datasource by Cal Henderson, MIT licence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pxby_lib.atomic import write_dir
from pxby_lib.sources import PNG_MAGIC, SourceError, read_jsonl
from pxby_lib.sources.npm import (
    DEFAULT_CACHE,
    NpmPackage,
    fetch_npm_tarball,
    read_tar_members,
    write_provenance,
)

EMOJI_PACKAGE = NpmPackage(
    "emoji-datasource-twitter",
    "16.0.0",
    "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
)
DEFAULT_OUT = Path("data/emoji")
DATA_MEMBER = "package/emoji.json"
IMAGE_MEMBER = "package/img/twitter/64/{image}"
EMOJI_FILE = "emoji.jsonl"
EMOJI_KEYS = ("index", "unified", "name", "short_names", "category", "subcategory", "image")
LEFT_OUT_CATEGORIES = ("Component",)

LICENSE_DATA = """\
# Data licence note

The images in `images/` are Twemoji graphics, (c) Twitter, Inc and other contributors,
licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/); source:
https://github.com/twitter/twemoji (as packaged by the npm package
emoji-datasource-twitter@16.0.0). They are copied unchanged; this project's prepare step
crops, resizes and quantises them to its 55-colour palette (a change under the licence).

The names, short names and categories in `emoji.jsonl` come from emoji-datasource
(https://github.com/iamcal/emoji-data), (c) 2013 Cal Henderson, MIT licence.
"""


def emoji_records(data: Any) -> list[dict[str, Any]]:
    """One record per emoji of emoji.json, in sort order, with an image; the components
    (skin-tone swatches, hair) and every skin-tone variant left out."""
    where = f"{EMOJI_PACKAGE.spec} {DATA_MEMBER}"
    if not isinstance(data, list) or not data:
        raise SourceError(f"{where}: expected a non-empty list of emoji; check the version pin.")
    records = []
    for e in sorted(data, key=lambda e: e.get("sort_order", 0)):
        missing = [k for k in ("unified", "name", "short_names", "category", "subcategory",
                               "image", "sort_order") if k not in e]
        if missing:
            raise SourceError(f"{where}: emoji {e.get('unified', '?')} lacks {missing}; check "
                              "the version pin.")
        if e["category"] in LEFT_OUT_CATEGORIES or not e.get("has_img_twitter"):
            continue
        records.append({"index": len(records), "unified": e["unified"], "name": e["name"],
                        "short_names": list(e["short_names"]), "category": e["category"],
                        "subcategory": e["subcategory"], "image": e["image"]})
    return records


def build_emoji(out_dir: str | Path = DEFAULT_OUT, cache_dir: str | Path = DEFAULT_CACHE, *,
                package: NpmPackage = EMOJI_PACKAGE) -> dict[str, Any]:
    """Build the emoji snapshot into `out_dir` atomically; returns the provenance."""
    tarball = fetch_npm_tarball(package, Path(cache_dir).expanduser())
    raw = read_tar_members(tarball, [DATA_MEMBER], package)[DATA_MEMBER]
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{package.spec} {DATA_MEMBER}: not valid JSON ({err}).") from err
    records = emoji_records(data)
    members = {r["image"]: IMAGE_MEMBER.format(image=r["image"]) for r in records}
    images = read_tar_members(tarball, members.values(), package)
    provenance: dict[str, Any] = {}

    def fill(tmp: Path) -> None:
        (tmp / "images").mkdir()
        for r in records:
            png = images[members[r["image"]]]
            if not png.startswith(PNG_MAGIC):
                raise SourceError(f"{package.spec} {members[r['image']]}: not a PNG; check the "
                                  "version pin.")
            (tmp / "images" / r["image"]).write_bytes(png)
        lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records]
        (tmp / EMOJI_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        provenance.update({
            "packages": [{"name": package.name, "version": package.version,
                          "integrity": package.integrity, "tarball": package.tarball_name,
                          "fetched_with": f"npm pack {package.spec}"}],
            "members": {"data": DATA_MEMBER, "images": IMAGE_MEMBER},
            "selection": {"order": "sort_order", "left_out_categories": list(LEFT_OUT_CATEGORIES),
                          "skin_tone_variants": "left out (base image only)",
                          "image_format": "64x64 RGBA PNG, copied unchanged"},
            "counts": {"emoji": len(records), "images": len(records),
                       "in_package": len(data)},
            "licence": "images: Twemoji (c) Twitter, Inc and other contributors, CC-BY 4.0; "
                       "data: emoji-datasource (c) Cal Henderson, MIT (LICENSE-DATA.md)",
        })
        write_provenance(tmp, provenance, LICENSE_DATA)

    write_dir(out_dir, fill)
    return provenance


def image_path(data_dir: str | Path, record: dict[str, Any]) -> Path:
    """Path of an emoji's PNG in a snapshot; it must exist."""
    path = Path(data_dir) / "images" / record["image"]
    if not path.is_file():
        raise SourceError(f"emoji {record['index']} ({record['name']}): image {path} is "
                          f"missing; rebuild with `python -m pxby_lib.sources emoji --out "
                          f"{data_dir}`.")
    return path


def load_emoji(data_dir: str | Path) -> list[dict[str, Any]]:
    """Records of `emoji.jsonl` in order, each with an existing image."""
    path = Path(data_dir) / EMOJI_FILE
    fix = f"rebuild the snapshot with `python -m pxby_lib.sources emoji --out {data_dir}`"
    records = []
    for line_no, record in read_jsonl(path, fix):
        missing = [k for k in EMOJI_KEYS if k not in record]
        if missing or record.get("index") != len(records):
            raise SourceError(f"{path} line {line_no}: needs keys {EMOJI_KEYS} and index "
                              f"{len(records)} (missing: {missing}); {fix}.")
        image_path(data_dir, record)
        records.append(record)
    if not records:
        raise SourceError(f"{path} holds no records; {fix}.")
    return records
