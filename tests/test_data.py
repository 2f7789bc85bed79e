"""Captions, the item split, training samples and the prepare step (spec sections 6, 15):
pxby_lib.captions, pxby_lib.dataset, pxby_lib.prepare."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pxby_lib import captions, dataset, prepare
from pxby_lib.pixels import image_to_grid
from pxby_lib.sequence import centres, decode_centres, encode_item
from pxby_lib.tokenizer import PALETTE_RGB, encode_text

# ----------------------------------------------------------------------------- captions


def test_build_caption_joins_distinct_entries_in_order():
    entries = ["It sleeps.", "It eats\nberries.", "It sleeps.", "It\u2019s \u201cnice\u201d\u2014really."]
    assert captions.build_caption(entries, None) == "It sleeps. It eats berries. It's \"nice\" - really."


def test_build_caption_cap_keeps_whole_sentences():
    entries = ["One two three. Four five six.", "Seven eight nine ten."]
    text = captions.build_caption(entries, 40)
    assert text == "One two three. Four five six."  # 29 chars: the next sentence would pass 40
    assert captions.build_caption(entries, 29) == "One two three. Four five six."


def test_build_caption_cap_on_word_boundary_never_mid_word():
    entries = ["alpha beta gamma delta epsilon zeta eta theta"]
    assert len(entries[0]) == 45 and captions.build_caption(entries, 45) == entries[0]
    for cap in range(5, 45):
        text = captions.build_caption(entries, cap)
        assert len(text) <= cap and entries[0].startswith(text)
        assert entries[0][len(text)] == " ", (cap, text)  # the cut falls on a space
    assert captions.build_caption(entries, 16) == "alpha beta gamma"
    assert captions.build_caption(["supercalifragilistic"], 5) == "supercalifragilistic"


def test_build_caption_empty():
    assert captions.build_caption([], 100) == "" and captions.build_caption(["", "  "], 100) == ""


# ----------------------------------------------------------------------------- split


def test_split_items():
    train, test = dataset.split_items(964, 0.1, seed=0)
    assert (len(train), len(test)) == (867, 97)  # as train_test_split(test_size=0.1)
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(964))
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
    again = dataset.split_items(964, 0.1, seed=0)
    assert np.array_equal(again[1], test)
    other = dataset.split_items(964, 0.1, seed=1)
    assert not np.array_equal(other[1], test)
    with pytest.raises(ValueError, match="at least 2"):
        dataset.split_items(1)


# ----------------------------------------------------------------------------- samples


def tiny_item(centre_ids):
    w = np.zeros((len(centre_ids), 3, 3), np.uint8)
    w[:, 1, 1] = centre_ids
    w[:, 0, 1] = np.arange(len(centre_ids))  # marks each window's own position
    return w


def test_window_samples_targets_and_wrap():
    items = [tiny_item([10, 11, 12, 13, 14]), tiny_item([20, 21, 22])]
    ds = dataset.WindowSamples(items, seq_len=3, stride=2)
    assert len(ds) == 5 and ds.item_of_sample.tolist() == [0, 0, 0, 1, 1]
    expected = [([10, 11, 12], 13), ([12, 13, 14], 10), ([14, 10, 11], 12),
                ([20, 21, 22], 20), ([22, 20, 21], 22)]
    for i, (xs, y) in enumerate(expected):
        x, target = ds[i]
        assert x.dtype == torch.int64 and x.shape == (3, 3, 3) and target.shape == ()
        assert x[:, 1, 1].tolist() == xs and int(target) == y
    assert ds[2][0][:, 0, 1].tolist() == [4, 0, 1]  # whole windows, not only centres


def test_window_samples_short_item_wraps_and_too_long_seq_len():
    items = [tiny_item([10, 11, 12, 13, 14]), tiny_item([20, 21, 22])]
    ds = dataset.WindowSamples(items, seq_len=4, stride=4)
    x, y = ds[2]  # item 1, shorter than seq_len: wraps more than once
    assert x[:, 1, 1].tolist() == [20, 21, 22, 20] and int(y) == 21
    with pytest.raises(ValueError, match="longest, item 0, has 5 windows"):
        dataset.WindowSamples(items, seq_len=6)


def test_batch_equals_stacked_getitem():
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 113, (n, 3, 3)).astype(np.uint8) for n in (40, 75, 9)]
    ds = dataset.WindowSamples(items, seq_len=16, stride=5)
    assert len(ds) == 8 + 15 + 2
    idx = [3, 0, 24, 11, 11]
    x, y = ds.batch(idx)
    assert x.shape == (5, 16, 3, 3) and y.shape == (5,) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x, torch.stack([ds[i][0] for i in idx]))
    assert torch.equal(y, torch.stack([ds[i][1] for i in idx]))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 16, 3, 3) and torch.equal(xb, ds.batch([0, 1, 2, 3])[0])


# ----------------------------------------------------------------------------- prepare


def write_snapshot(root: Path) -> dict[int, str]:
    """A tiny snapshot with three good sprites and three bad items; returns expected skips."""
    (root / "sprites").mkdir(parents=True)

    def rgba(colour, h, w):
        a = np.zeros((h + 4, w + 4, 4), np.uint8)
        a[2 : 2 + h, 2 : 2 + w] = (*colour, 255)
        a[2, 2] = (0, 0, 0, 255)
        return Image.fromarray(a)

    rgba(PALETTE_RGB[8], 30, 20).save(root / "sprites" / "001.png")
    rgba(PALETTE_RGB[39], 10, 40).save(root / "sprites" / "002.png")
    (root / "sprites" / "003.png").write_bytes(b"garbage, not an image")
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(root / "sprites" / "004.png")
    rgba(PALETTE_RGB[20], 12, 12).save(root / "sprites" / "005.png")
    rgba(PALETTE_RGB[27], 25, 25).convert("L").save(root / "sprites" / "006.png")
    entries = {1: ["Seed on its back. It grows!", "Second entry & more."], 2: ["Fast bird."],
               3: ["Corrupt sprite."], 4: ["Invisible."], 5: ["??? ###"], 6: ["Gray one."]}
    with open(root / "pokedex.jsonl", "w") as f:
        for i, e in entries.items():
            f.write(json.dumps({"id": i, "name": f"Mon{i}", "types": ["Normal"],
                                "category": "Test", "entries": e}) + "\n")
    return {3: "cannot read image file", 4: "no content", 5: "caption is empty"}


def test_prepare_synthetic_snapshot(tmp_path):
    src, out = tmp_path / "pokemon", tmp_path / "artifacts" / "dataset"
    skips = write_snapshot(src)
    report = prepare.prepare_dataset(src, out, max_chars=1000)
    assert report["n_items"] == 3 and report["n_skipped"] == 3
    for s in report["skipped"]:
        assert skips[s["id"]] in s["reason"] and f"pokemon {s['id']:03d}" in s["reason"]
    assert report["dropped_chars"] == {"'&' (AMPERSAND)": 1}
    for f in ("windows.npy", "offsets.npy", "items.csv", "report.json",
              "report.md", "sprites_preview.png"):
        assert (out / f).is_file(), f
    assert "caption is empty" in (out / "report.md").read_text()

    ds = dataset.load_dataset(out)
    assert len(ds) == 3 and list(ds.meta.columns[:8]) == dataset.META_COLUMNS
    assert ds.meta["item"].tolist() == [0, 1, 2]  # the dataset index, as in every table
    assert ds.meta["id"].tolist() == [1, 2, 6] and ds.meta["name"].tolist() == ["Mon1", "Mon2", "Mon6"]
    train, test = ds.split(seed=0, test_fraction=0.34)
    assert sorted([*train, *test]) == [0, 1, 2] and len(test) == 2
    assert [len(w) for w in ds.items(test)] == [len(ds.item(i)) for i in test]
    for k, pid in enumerate([1, 2, 6]):
        grid = image_to_grid(src / "sprites" / f"{pid:03d}.png")
        caption, _ = encode_text(captions.build_caption(json.loads(
            (src / "pokedex.jsonl").read_text().splitlines()[pid - 1])["entries"], 1000))
        assert np.array_equal(ds.item(k), encode_item(grid, caption))
        row = ds.meta.iloc[k]
        assert (row.height, row.width) == grid.shape
        assert row.n_image == grid.shape[0] * (grid.shape[1] + 1)
        assert row.n_tokens == row.n_text + row.n_image == len(ds.item(k))
    assert decode_centres(centres(ds.item(0))).caption.startswith("seed on its back. it grows!")
    assert sum(v["count"] for v in report["palette_usage"].values()) == ds.meta["n_image"].sum() - sum(
        ds.meta["height"])  # every image token but the separators is a colour

    prepare.prepare_dataset(src, out, max_chars=1000)  # replaces
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"]  # no temp folders left
    with pytest.raises(ValueError, match="longest, item 2, has 669 windows"):
        dataset.WindowSamples(ds.items(), seq_len=5000)
    with pytest.raises(ValueError, match="usable items"):  # one item cannot be split
        prepare.prepare_dataset(src, tmp_path / "other", limit_items=1)
    assert not (tmp_path / "other").exists()


def test_prepare_limit_items(tmp_path):
    write_snapshot(tmp_path / "pokemon")
    report = prepare.prepare_dataset(tmp_path / "pokemon", tmp_path / "ds", limit_items=2)
    assert report["n_items"] == 2 and report["n_skipped"] == 0


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro prepare@<dataset>"):
        dataset.load_dataset(tmp_path / "nowhere")
    write_snapshot(tmp_path / "pokemon")
    prepare.prepare_dataset(tmp_path / "pokemon", tmp_path / "ds")
    np.save(tmp_path / "ds" / "offsets.npy", np.array([0, 5]))
    with pytest.raises(ValueError, match="offsets.npy"):
        dataset.load_dataset(tmp_path / "ds")


def test_prepare_from_parquet(tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    items, images = [], []
    for h, w in [(3, 2), (4, 5)]:
        grid = rng.integers(58, 113, (h, w)).astype(np.uint8)
        items.append(encode_item(grid, encode_text(f"item {h}x{w}.")[0]))
        buf = io.BytesIO()
        Image.fromarray(PALETTE_RGB[grid - 58]).save(buf, format="PNG")
        images.append(buf.getvalue())
    table = pa.table({"image": images, "caption": ["item 3x2.", "item 4x5."],
                      "pixelbyte": [w.astype(int).tolist() for w in items]})
    pq.write_table(table, tmp_path / "train.parquet")
    report = prepare.prepare_dataset(tmp_path / "train.parquet", tmp_path / "ds")
    ds = dataset.load_dataset(tmp_path / "ds")
    assert report["n_items"] == 2 and np.array_equal(ds.windows, np.concatenate(items))
    assert ds.meta["height"].tolist() == [3, 4] and ds.meta["caption"].tolist()[1] == "item 4x5."


def test_prepare_gives_the_same_bytes_from_any_path_spelling(tmp_path, monkeypatch):
    # no wall-clock time and no machine path in the artifact: DVC sees the same hash
    src = tmp_path / "repo" / "data" / "snap"
    write_snapshot(src)
    (tmp_path / "repo" / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path / "repo")
    prepare.prepare_dataset(src, tmp_path / "a", max_chars=1000)  # absolute
    prepare.prepare_dataset(Path("data/snap"), tmp_path / "b", max_chars=1000)  # relative
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "a" / "report.json").read_text())["source"] == "data/snap"


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_prepare_real_data(tmp_path, raw_data):
    report = prepare.prepare_dataset(raw_data, tmp_path / "dataset")
    assert report["n_items"] + report["n_skipped"] == 649 and report["n_items"] >= 640
    assert 0.45 < report["text_share"] < 0.55
    ds = dataset.load_dataset(tmp_path / "dataset")
    assert len(ds.split(0, 0.1)[1]) == 65 and ds.meta["height"].max() == 25
    for k in range(len(ds)):
        d = decode_centres(centres(ds.item(k)))
        assert d.problems == [] and max(d.shape) == 25 and d.caption, k
    train = ds.items(ds.split(0, 0.1)[0])
    samples = dataset.WindowSamples(train)
    assert len(samples) == sum(-(-len(w) // 32) for w in train)
