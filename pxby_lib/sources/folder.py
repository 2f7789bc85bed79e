"""Your own pixel art: a folder of images and a captions file.

    data/mine/
      captions.csv        header `file,caption` (or captions.jsonl: {"file": ..., "caption": ...})
      sprites/hero.png    PNG or GIF (the first frame), any size
      ...

`file` is a path relative to the folder. `prepare` fits each image to the dataset's
`max_size` and quantises it to the palette (as for the built-in sources), caps the caption
at `max_chars`, and counts and drops the characters outside the vocabulary (its report
lists them). Item ids follow the captions file's order (1, 2, ...); names are the files'
paths without the extension.

Everything is checked before anything is written, and the first problem is one
`SourceError` naming the file (and the line) and the fix: a missing, non-UTF-8 or
malformed captions file; a row without a file or a caption; a file listed twice; a listed
file that is missing, empty, not an image, or larger than MAX_SIDE pixels on a side; an
image in the folder that the captions file does not list.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from . import SourceError

CAPTION_FILES = ("captions.csv", "captions.jsonl")
IMAGE_SUFFIXES = (".png", ".gif")
MAX_SIDE = 4096  # pixels: larger images are refused (pixel art fits far below; it bounds memory)


def captions_file(data_dir: str | Path) -> Path | None:
    """The folder's captions file, or None if it has none (then it is no folder source)."""
    found = [Path(data_dir) / name for name in CAPTION_FILES if (Path(data_dir) / name).is_file()]
    if len(found) > 1:
        raise SourceError(f"{data_dir}: both {CAPTION_FILES[0]} and {CAPTION_FILES[1]}; keep one.")
    return found[0] if found else None


def _rows(path: Path) -> list[tuple[int, Any, Any]]:
    """(line, file, caption) of every row of a captions file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8.") from err
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or {"file", "caption"} - set(reader.fieldnames):
            raise SourceError(f"{path}: the header must name the columns `file` and `caption`, "
                              f"got {reader.fieldnames}; make the first line `file,caption`.")
        return [(reader.line_num, r.get("file"), r.get("caption")) for r in reader]
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SourceError(f"{path} line {line_no}: not valid JSON ({err}); write one "
                              '{"file": ..., "caption": ...} object per line.') from err
        if not isinstance(record, dict):
            raise SourceError(f"{path} line {line_no}: expected an object with `file` and "
                              f"`caption`, got {type(record).__name__}.")
        rows.append((line_no, record.get("file"), record.get("caption")))
    return rows


def _check_image(path: Path, where: str) -> None:
    if not path.is_file():
        raise SourceError(f"{where}: {path} does not exist; fix the path (relative to the "
                          "folder) or remove the row.")
    if path.stat().st_size == 0:
        raise SourceError(f"{where}: {path} is empty (0 bytes); replace it or remove the row.")
    try:
        with Image.open(path) as im:
            width, height = im.size
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SourceError(f"{where}: {path} is not a readable image ({err}); save it as PNG "
                          "or remove the row.") from err
    if width < 1 or height < 1:
        raise SourceError(f"{where}: {path} has no pixels ({width}x{height}); remove the row.")
    if max(width, height) > MAX_SIDE:
        raise SourceError(f"{where}: {path} is {width}x{height}, larger than {MAX_SIDE} pixels "
                          "on a side; scale it down (prepare fits it to max_size anyway).")


def load_folder(data_dir: str | Path) -> list[dict[str, Any]]:
    """The folder's items in the captions file's order: {index, name, path, caption}."""
    data_dir = Path(data_dir)
    path = captions_file(data_dir)
    if path is None:
        raise SourceError(f"{data_dir}: no {CAPTION_FILES[0]} or {CAPTION_FILES[1]}; add one "
                          "with a `file` and a `caption` per image.")
    records, seen = [], {}
    for line_no, file, caption in _rows(path):
        where = f"{path} line {line_no}"
        if not isinstance(file, str) or not file.strip():
            raise SourceError(f"{where}: no file name; give each row a `file`.")
        if not isinstance(caption, str) or not caption.strip():
            raise SourceError(f"{where}: no caption for {file}; write one, or remove the row.")
        key = Path(file.strip()).as_posix()
        if key in seen:
            raise SourceError(f"{where}: {key} is listed twice (first at line {seen[key]}); keep "
                              "one row per image.")
        seen[key] = line_no
        image = data_dir / key
        _check_image(image, where)
        records.append({"index": len(records) + 1, "name": str(Path(key).with_suffix("")),
                        "path": image, "caption": caption.strip()})
    if not records:
        raise SourceError(f"{path}: no rows; add a `file,caption` row per image.")
    unlisted = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                      and p.relative_to(data_dir).as_posix() not in seen)
    if unlisted:
        raise SourceError(f"{path}: no caption for {len(unlisted)} image(s) in the folder, "
                          f"e.g. {unlisted[:3]}; add rows for them or move them out.")
    return records


def write_folder(out_dir: str | Path, items: list[tuple[str, bytes, str]]) -> None:
    """A folder source from (file name, image bytes, caption) triples: the images and a
    captions.csv, written atomically (a template of the format; `make smoke` builds one)."""
    from pxby_lib.atomic import write_dir

    names = [name for name, _, _ in items]
    if len(set(names)) != len(names) or not items:
        raise SourceError(f"{out_dir}: need one or more items with distinct file names")

    def fill(tmp: Path) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "caption"])
        for name, image, caption in items:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(image)
            writer.writerow([name, caption])
        (tmp / CAPTION_FILES[0]).write_text(buffer.getvalue(), encoding="utf-8")

    write_dir(out_dir, fill)
