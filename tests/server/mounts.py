"""Real read-only storage for the server tests: a tmpfs mounted on a test's directory.

Tests run as root, where file modes do not stop a write; only a read-only mount does. ``tmpfs_mount`` mounts
a small tmpfs (read-only or not) and unmounts it on exit; ``remount_read_only`` turns a mounted one read-only
under a running server. Where mounting is not allowed (no CAP_SYS_ADMIN), the test is skipped, and fails under CI.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import IN_CI

__all__ = ["remount_read_only", "tmpfs_mount"]


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)


def _unavailable(reason: str) -> NoReturn:
    # CI runs as root, where mounting works: a read-only file system is then tested for real, never skipped.
    if IN_CI:
        pytest.fail(f"{reason}; the read-only storage tests must run under CI")
    pytest.skip(reason)


@contextlib.contextmanager
def tmpfs_mount(path: Path, *, read_only: bool = False, size: str = "64m") -> Iterator[Path]:
    """A tmpfs on ``path`` (created), read-only if asked; skips the test when mounting is not permitted."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        _unavailable("mount(8) is not installed")
    path.mkdir(parents=True, exist_ok=True)
    options = f"{'ro' if read_only else 'rw'},size={size},mode=0755"
    mounted = _mount("-t", "tmpfs", "-o", options, "tmpfs", str(path))
    if mounted.returncode != 0:
        _unavailable(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        # Lazy: a server that still holds a file open must not leave the mount (and the test directory) behind.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def remount_read_only(path: Path) -> None:
    result = _mount("-o", "remount,ro", str(path))
    assert result.returncode == 0, result.stderr
