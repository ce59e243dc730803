"""``regtool serve gc`` takes distribution's ``registry garbage-collect CONFIG -m -d`` as it is typed: the config
file as an argument, ``-m`` for --delete-untagged and ``-d`` for --dry-run, with the same result as the long
spelling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.support import assert_user_error, in_process
from tests.gc.conftest import Filled, snapshot, stored_blobs


def _config(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: :5000\n")
    return path


def _report(*args: str) -> dict[str, Any]:
    done = in_process("serve", "gc", *args, "--delay", "0", "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_distributions_spelling_is_the_long_one(filled: Filled, tmp_path: Path) -> None:
    config = _config(tmp_path, filled.root)
    before = snapshot(filled.root)
    short = _report(str(config), "-m", "-d")
    assert short == _report("--config", str(config), "--delete-untagged", "--dry-run")
    assert short["dry_run"] is True and short["bytes_freed"] == filled.scene.freed(filled.scene.live_untagged)
    assert snapshot(filled.root) == before
    # Without -m the untagged manifests stay, as distribution keeps them.
    assert _report(str(config), "-d")["bytes_freed"] == filled.scene.freed(filled.scene.live_default)
    done = _report(str(config), "-m")
    assert done["dry_run"] is False
    assert stored_blobs(filled.root) == filled.scene.live_untagged


def test_one_configuration_file_only(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path)
    done = in_process("serve", "gc", str(config), "--config", str(config))
    assert_user_error(done, 2, "two configuration files")
