"""``regtool copy`` and ``regtool demo`` run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.reference import Reference
from tests.support.serve import RunningServe
from tests.v1.images import build_layout


def regtool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regtool", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def push_v1(serve: RunningServe, layout: Path, name: str) -> None:
    async def main() -> None:
        async with Client() as client:
            await client.push(str(layout), Reference.parse(f"{serve.host}/{name}"), protocol="v1")

    anyio.run(main)


def test_copy_v1_to_v2_with_json_output(serve: RunningServe, tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=2)
    push_v1(serve, tmp_path / "src", "team/app:1")
    done = regtool(
        "copy",
        f"{serve.host}/team/app:1",
        f"{serve.host}/team/migrated:1",
        "--from-protocol",
        "v1",
        "--to-protocol",
        "v2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["source_protocol"], result["target_protocol"]) == ("v1", "v2")
    assert result["blobs_copied"] == 3
    assert result["digest"].startswith("sha256:")
    human = regtool("copy", f"{serve.host}/team/migrated:1", f"{serve.host}/team/back:1", "--to-protocol", "v1", "-q")
    assert human.returncode == 0, human.stderr
    assert "(v1)" in human.stdout and "v1 image" in human.stdout


def test_copy_errors_are_one_line_with_exit_codes(serve: RunningServe) -> None:
    missing = regtool("copy", f"{serve.host}/team/none:1", f"{serve.host}/team/x:1", "-q")
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr
    bad = regtool("copy", "Not A Reference", f"{serve.host}/team/x:1")
    assert bad.returncode == 2


@pytest.mark.slow
def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    done = regtool("demo", "--layers", "3", "--layer-kib", "64", "--latency", "5", "-q", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "v1" in done.stdout and "v2" in done.stdout
    assert "max 1" in done.stdout
    assert "faster" in done.stdout
    assert list(tmp_path.iterdir()) == []
