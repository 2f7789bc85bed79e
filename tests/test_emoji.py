"""The second dataset: the Twemoji snapshot (pxby_lib.sources.emoji), its captions, its items."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pxby_lib.captions import emoji_caption
from pxby_lib.dataset import load_dataset
from pxby_lib.pixels import image_to_grid
from pxby_lib.prepare import prepare_dataset
from pxby_lib.sequence import centres, decode_centres, encode_item
from pxby_lib.sources import SourceError
from pxby_lib.sources.emoji import (
    DATA_MEMBER,
    EMOJI_PACKAGE,
    IMAGE_MEMBER,
    build_emoji,
    emoji_records,
    load_emoji,
)
from pxby_lib.sources.npm import NpmPackage, file_integrity
from pxby_lib.tokenizer import decode_text, encode_text

EMOJI_DIR = Path(__file__).resolve().parents[1] / "data" / "emoji"


@pytest.fixture(scope="module")
def emoji_data(raw_data) -> Path:  # raw_data: data/ was pulled (fails, not skips, otherwise)
    if not EMOJI_DIR.is_dir():
        pytest.fail(f"{EMOJI_DIR} is absent: run `make data`", pytrace=False)
    return EMOJI_DIR


def normalised(record: dict) -> tuple[str, dict]:
    ids, dropped = encode_text(emoji_caption(record, 200))
    return decode_text(ids), dict(dropped)


@pytest.mark.parametrize(("name", "expected", "dropped"), [
    # punctuation in the name (':', '*'), a short name with '_'
    ("KEYCAP: *", "keycap: *. symbols, keycap. keycap star.", {}),
    # digits; '&' of the category has no id: dropped and counted
    ("HUNDRED POINTS SYMBOL", "hundred points symbol. smileys emotion, emotion. 100.", {"&": 1}),
    ("THUMBS UP SIGN", "thumbs up sign. people body, hand-fingers-closed. +1, thumbsup.", {"&": 1}),
    # a flag: accents stripped (NFKD), a typographic apostrophe folded to ASCII
    ("Côte d’Ivoire Flag", "cote d'ivoire flag. flags, country-flag. flag-ci.", {}),
    # a short name that only repeats the name is left out
    ("KEYCAP TEN", "keycap ten. symbols, keycap.", {}),
])
def test_caption_builder_on_real_entries(emoji_data, name, expected, dropped):
    record = next(r for r in load_emoji(emoji_data) if r["name"] == name)
    assert normalised(record) == (expected, dropped)


def test_real_snapshot_is_one_item_per_emoji(emoji_data):
    records = load_emoji(emoji_data)
    assert len(records) == 1906  # 1,911 emoji less the 5 skin-tone swatches (Component)
    assert {r["category"] for r in records}.isdisjoint({"Component"})
    assert [r["index"] for r in records] == list(range(len(records)))
    assert len({r["unified"] for r in records}) == len(records)
    provenance = json.loads((emoji_data / "PROVENANCE.json").read_text())
    assert provenance["packages"][0]["integrity"] == EMOJI_PACKAGE.integrity
    assert "CC-BY 4.0" in (emoji_data / "LICENSE-DATA.md").read_text()


def test_an_item_round_trips_through_windows(emoji_data, tmp_path):
    prepare_dataset(emoji_data, tmp_path / "emoji", max_size=16, max_chars=200, limit_items=6)
    dataset = load_dataset(tmp_path / "emoji")
    records = load_emoji(emoji_data)[:6]
    for k, record in enumerate(records):
        grid = image_to_grid(emoji_data / "images" / record["image"], max_size=16)
        caption, _ = encode_text(emoji_caption(record, 200))
        assert np.array_equal(dataset.item(k), encode_item(grid, caption))  # image + text -> windows
        back = decode_centres(centres(dataset.item(k)))  # windows -> image + text
        assert back.problems == [] and np.array_equal(back.grid, grid)
        assert back.caption == decode_text(caption) and max(back.shape) == 16
    report = json.loads((tmp_path / "emoji" / "report.json").read_text())
    assert report["kind"] == "emoji" and 0 < report["text_share"] < 0.5


# ----------------------------------------------------------------------------- the builder


def fake_package(cache: Path, n: int = 3) -> tuple[NpmPackage, list[dict]]:
    """A tiny emoji-datasource-twitter tarball: n emoji, one a skin-tone swatch."""
    data = []
    files = {}
    for i in range(n):
        image = f"{1000 + i:x}.png"
        data.append({"unified": f"{1000 + i:X}", "name": f"TEST FACE {i}", "short_names": [f"t_{i}"],
                     "category": "Component" if i == 1 else "Smileys & Emotion",
                     "subcategory": "face", "image": image, "sort_order": n - i,
                     "has_img_twitter": True})
        buf = io.BytesIO()
        Image.new("RGBA", (8, 8), (200, 20 * i, 0, 255)).save(buf, format="PNG")
        files[IMAGE_MEMBER.format(image=image)] = buf.getvalue()
    files[DATA_MEMBER] = json.dumps(data).encode()
    cache.mkdir(parents=True, exist_ok=True)
    tgz = cache / "fake-emoji-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return NpmPackage("fake-emoji", "1.0.0", file_integrity(tgz)), data


def test_builder_is_byte_identical_and_orders_by_sort_order(tmp_path):
    package, data = fake_package(tmp_path / "cache")
    build_emoji(tmp_path / "a", tmp_path / "cache", package=package)
    build_emoji(tmp_path / "b", tmp_path / "cache", package=package)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    names = [r["name"] for r in load_emoji(tmp_path / "a")]
    assert names == ["TEST FACE 2", "TEST FACE 0"]  # sort order; the Component left out
    assert emoji_records(data) == [{k: v for k, v in r.items() if k != "sort_order"} for r in
                                   load_emoji(tmp_path / "a")]


def test_builder_refuses_a_tarball_that_is_not_the_pinned_one(tmp_path):
    package, _ = fake_package(tmp_path / "cache")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("previous snapshot")
    wrong = NpmPackage(package.name, package.version, EMOJI_PACKAGE.integrity)
    with pytest.raises(SourceError, match="integrity mismatch"):
        build_emoji(tmp_path / "old", tmp_path / "cache", package=wrong)
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["keep.txt"]  # left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "old"]  # no temp folder


def test_loading_a_broken_snapshot_names_the_fix(tmp_path):
    package, _ = fake_package(tmp_path / "cache")
    build_emoji(tmp_path / "e", tmp_path / "cache", package=package)
    next((tmp_path / "e" / "images").iterdir()).unlink()
    with pytest.raises(SourceError, match="python -m pxby_lib.sources emoji"):
        load_emoji(tmp_path / "e")


@pytest.mark.slow
def test_a_rebuild_from_the_pinned_package_equals_the_tracked_snapshot(emoji_data, tmp_path):
    """data/emoji (restored by `dvc pull`) byte for byte equals a rebuild from npm: needs
    the pinned tarball (~62 MB) in ~/.cache/pxby/npm or `npm pack` access to the registry."""
    build_emoji(tmp_path / "emoji")
    tracked = sorted(p.relative_to(emoji_data) for p in emoji_data.rglob("*") if p.is_file())
    rebuilt = sorted(p.relative_to(tmp_path / "emoji") for p in (tmp_path / "emoji").rglob("*")
                     if p.is_file())
    assert tracked == rebuilt
    assert all((emoji_data / f).read_bytes() == (tmp_path / "emoji" / f).read_bytes() for f in tracked)
