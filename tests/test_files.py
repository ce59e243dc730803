"""``regtool.files``: atomic replacement, the file mode, and nothing left behind when a write fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from regtool.files import fsync_dir, write_atomic


def test_write_atomic_replaces_the_file_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"old")
    old = os.umask(0o022)
    try:
        write_atomic(target, b"new", mode=0o600)
        assert target.read_bytes() == b"new"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        write_atomic(target, b"newer")
        assert target.read_bytes() == b"newer" and stat.S_IMODE(target.stat().st_mode) == 0o644
        os.umask(0o077)
        write_atomic(target, b"private")
        assert stat.S_IMODE(target.stat().st_mode) == 0o600, "a umask that keeps files private is honoured"
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    fsync_dir(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "index.json"
    target.write_bytes(b"old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_write_atomic_without_replace_leaves_what_is_there(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    assert write_atomic(target, b"first", replace=False) is True
    assert write_atomic(target, b"second", replace=False) is False
    assert target.read_bytes() == b"first"
    assert write_atomic(target, b"third") is True
    assert target.read_bytes() == b"third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
