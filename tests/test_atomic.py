"""Atomic writes: the target is the old file or the new one, never half of one."""

import stat

import pytest

from pxby_lib.atomic import atomic_path, write_bytes, write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_success_replaces_the_file_with_a_shareable_mode(tmp_path):
    target = tmp_path / "model.pt"
    write_bytes(target, b"\x00" * 3)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
