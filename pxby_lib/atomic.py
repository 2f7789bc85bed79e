"""Atomic file writes: a temp file in the target's folder, then one rename onto the target.

A reader, or a stage killed half-way, sees the old file or the new one, never half of
one. Temp files are named `.<name>.<random>.tmp` beside the target and removed on error.

    with atomic_path("reports/figure.png") as tmp:  # write to tmp however you like
        fig.savefig(tmp, format="png")             # (give the format: tmp ends in .tmp)
    write_text("metrics/m.json", text); write_bytes("models/m/last.pt", data)
    write_dir("data/pokemon", fill)                # fill(tmp) writes a whole folder
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o644  # mkstemp makes 0600 files; outputs are meant to be shared


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_dir(path: str | Path, fill: Callable[[Path], None]) -> None:
    """fill(tmp) writes a folder beside `path`, which then replaces `path` (the old folder
    is swapped out only at the end, and restored if the swap fails)."""
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.building-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; outputs are meant to be shared
        fill(tmp)
        if not path.exists():
            os.rename(tmp, path)
            return
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        old.rmdir()  # only its unique name is needed
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # also on Ctrl-C: no half-written folder stays
        raise
