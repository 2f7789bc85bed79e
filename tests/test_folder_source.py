"""The folder source: your own images and captions, every bad input refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pxby_lib.dataset import load_dataset
from pxby_lib.prepare import prepare_dataset, source_kind
from pxby_lib.sources import SourceError
from pxby_lib.sources.folder import MAX_SIDE, load_folder


def sprite(path, size=(20, 14), seed=0, mode="RGBA"):
    """A small random sprite on a transparent background, saved at `path`."""
    rng = np.random.default_rng(seed)
    rgba = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    rgba[2:-2, 3:-3, :3] = rng.integers(0, 256, size=(size[1] - 4, size[0] - 6, 3))
    rgba[2:-2, 3:-3, 3] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Three PNGs and a GIF in two folders, with a CSV of captions."""
    d = tmp_path / "mine"
    sprite(d / "a.png", seed=1)
    sprite(d / "b.png", size=(300, 120), seed=2)  # large: fitted to max_size by prepare
    sprite(d / "sub" / "c.gif", seed=3, mode="RGB")
    sprite(d / "d.png", seed=4)
    (d / "captions.csv").write_text('file,caption\na.png,a red knight\nb.png,"a blue, wide '
                                    'castle"\nsub/c.gif,a green frog ☃ jumps\nd.png,the end\n',
                                    encoding="utf-8")
    return d


def write_captions(d, text: str | bytes, name="captions.csv"):
    path = d / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_folder_records_in_file_order(folder):
    records = load_folder(folder)
    assert [r["name"] for r in records] == ["a", "b", "sub/c", "d"]
    assert [r["index"] for r in records] == [1, 2, 3, 4]
    assert records[1]["caption"] == "a blue, wide castle"
    assert source_kind(folder) == "folder"


def test_jsonl_captions_give_the_same_records(folder):
    rows = [{"file": r["path"].relative_to(folder).as_posix(), "caption": r["caption"]}
            for r in load_folder(folder)]
    (folder / "captions.csv").unlink()
    write_captions(folder, "\n".join(json.dumps(r) for r in rows) + "\n", "captions.jsonl")
    assert [(r["name"], r["caption"]) for r in load_folder(folder)] == [
        (r["file"].rsplit(".", 1)[0], r["caption"]) for r in rows]


def test_prepare_builds_a_dataset_from_a_folder(folder, tmp_path):
    report = prepare_dataset(folder, tmp_path / "out", max_size=12, max_chars=40)
    assert report["kind"] == "folder" and report["n_items"] == 4 and report["n_skipped"] == 0
    assert any("SNOWMAN" in c for c in report["dropped_chars"])  # outside the vocabulary
    dataset = load_dataset(tmp_path / "out")
    assert len(dataset) == 4
    assert max(dataset.meta.loc[1, ["height", "width"]]) == 12  # the 300x120 image, fitted


@pytest.mark.parametrize("problem, match", [
    ("missing_file", "c.png does not exist"),
    ("empty_file", "is empty \\(0 bytes\\)"),
    ("not_an_image", "is not a readable image"),
    ("too_large", f"larger than {MAX_SIDE} pixels"),
    ("duplicate", "listed twice \\(first at line 2\\)"),
    ("no_caption", "no caption for b.png"),
    ("unlisted_image", "no caption for 1 image\\(s\\) in the folder, e.g. \\['extra.png'\\]"),
    ("not_utf8", "not UTF-8 text"),
    ("bad_header", "must name the columns `file` and `caption`"),
    ("no_captions_file", "folder of images with captions.csv or captions.jsonl"),
])
def test_bad_input_is_refused_naming_the_file_and_the_fix(tmp_path, problem, match):
    d = tmp_path / "mine"
    sprite(d / "a.png")
    sprite(d / "b.png", seed=1)
    rows = "file,caption\na.png,one\nb.png,two\n"
    if problem == "missing_file":
        rows += "c.png,three\n"
    elif problem == "empty_file":
        (d / "c.png").write_bytes(b"")
        rows += "c.png,three\n"
    elif problem == "not_an_image":
        (d / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
        rows += "c.png,three\n"
    elif problem == "too_large":
        Image.new("P", (MAX_SIDE + 1, 1)).save(d / "c.png")
        rows += "c.png,three\n"
    elif problem == "duplicate":
        rows += "a.png,again\n"
    elif problem == "no_caption":
        rows = "file,caption\na.png,one\nb.png,\n"
    elif problem == "unlisted_image":
        sprite(d / "extra.png", seed=2)
    elif problem == "not_utf8":
        rows = "file,caption\na.png,caf\xe9\nb.png,two\n".encode("latin-1")
    elif problem == "bad_header":
        rows = "image,text\na.png,one\nb.png,two\n"
    if problem != "no_captions_file":
        write_captions(d, rows)
    with pytest.raises((SourceError, FileNotFoundError), match=match) as caught:
        prepare_dataset(d, tmp_path / "out")
    assert "captions.csv" in str(caught.value) or problem == "no_captions_file"
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_snapshot_written_as_a_folder_reads_back_item_for_item(raw_data, tmp_path):
    """`python -m pxby_lib.sources folder` (the format's template, and make smoke's folder
    dataset): the first N items of a snapshot, their images and captions, round-trip."""
    import subprocess
    import sys

    from pxby_lib.prepare import raw_records

    out = tmp_path / "my_art"
    run = subprocess.run([sys.executable, "-m", "pxby_lib.sources", "folder", "--from",
                          str(raw_data), "--limit", "5", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "5 images" in run.stdout
    original = raw_records(raw_data, "pokemon", None)[:5]
    copied = load_folder(out)
    assert [r["caption"] for r in copied] == [r.text for r in original]  # commas, quotes intact
    assert [r["path"].read_bytes() for r in copied] == [r.image.read_bytes() for r in original]
    again = subprocess.run([sys.executable, "-m", "pxby_lib.sources", "folder", "--from",
                            str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")],
                           capture_output=True, text=True)
    assert again.returncode == 1 and again.stderr.startswith("error: source ")
    assert not (tmp_path / "x").exists()
