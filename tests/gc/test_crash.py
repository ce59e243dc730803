"""A collection stopped after any one of its removals leaves every live image whole, and the next run finishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from regtool.server.gc import GcOptions, Removal, collect_garbage
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.cli.support import in_process
from tests.gc.conftest import Filled, snapshot, stored_blobs

OPTIONS = GcOptions(delete_untagged=True, delay=0)


class Crash(Exception):
    pass


def _crash_after(count: int) -> Callable[[Removal], None]:
    seen: list[Removal] = []

    def removed(removal: Removal) -> None:
        seen.append(removal)
        if len(seen) == count:
            raise Crash(f"stopped after {removal}")

    return removed


def _assert_live_images_whole(filled: Filled, root: Path) -> None:
    registry = Registry(FilesystemDriver(root))
    for tag, digest in filled.scene.tags.items():
        repository, _, reference = tag.partition(":")
        assert registry.get_manifest(repository, reference).raw == filled.scene.blobs[digest]
    for digest in filled.scene.live_untagged:
        assert registry.blobs.get(digest) == filled.scene.blobs[digest]


def test_a_crash_after_any_removal_then_a_rerun_converges(filled: Filled, tmp_path: Path) -> None:
    clean_root = tmp_path / "clean"
    shutil.copytree(filled.root, clean_root)
    clean = collect_garbage(Registry(FilesystemDriver(clean_root)), OPTIONS)
    expected = snapshot(clean_root)
    assert stored_blobs(clean_root) == filled.scene.live_untagged
    assert len(clean.removed) > 20
    for count in range(1, len(clean.removed) + 1):
        root = tmp_path / f"crash-{count}"
        shutil.copytree(filled.root, root)
        with pytest.raises(Crash):
            collect_garbage(Registry(FilesystemDriver(root)), OPTIONS, on_removed=_crash_after(count))
        _assert_live_images_whole(filled, root)
        rerun = collect_garbage(Registry(FilesystemDriver(root)), OPTIONS)
        assert snapshot(root) == expected, f"after a crash at removal {count}"
        assert rerun.bytes_freed + sum(r.size for r in clean.removed[:count]) == clean.bytes_freed
        shutil.rmtree(root)


def test_serve_gc_killed_in_the_middle_then_run_again(filled: Filled, tmp_path: Path) -> None:
    root = filled.root
    junk = Registry(FilesystemDriver(root))
    for number in range(1000):
        junk.link_blob("junk", junk.blobs.put(f"junk {number} ".encode() * 20))
    command = [sys.executable, "-m", "regtool", "serve", "gc", "--root", str(root), "--delay", "0", "--delete-untagged"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    # The pipe holds 64 KiB of the ~200 KiB of lines: the process is at most that far past the first blob when
    # it is killed, in the middle of the blob phase.
    for line in process.stdout:
        if line.startswith("removed blob"):
            process.kill()
            break
    process.wait()
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    _assert_live_images_whole(filled, root)
    rerun = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--delete-untagged", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["counts"].get("blob", 0) > 0
    assert stored_blobs(root) == filled.scene.live_untagged
    assert not (root / "repositories" / "junk").exists()
