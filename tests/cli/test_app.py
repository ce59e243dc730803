"""The command line as a whole: version, help, usage errors."""

from __future__ import annotations

from pathlib import Path

from regtool import __version__
from tests.cli.support import regtool


def test_version(tmp_path: Path) -> None:
    proc = regtool("--version", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, f"regtool {__version__}\n")


def test_help_lists_every_command(tmp_path: Path) -> None:
    proc = regtool("--help", cwd=tmp_path, env={"COLUMNS": "120"})
    assert proc.returncode == 0
    for command in ("probe", "pull", "push", "tags", "catalog", "inspect", "delete", "serve"):
        assert f" {command} " in proc.stdout


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    proc = regtool("pull", "--no-such-option", "x", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--no-such-option" in proc.stderr
    assert proc.stdout == ""


def test_password_is_not_an_option(tmp_path: Path) -> None:
    proc = regtool("pull", "x", "--password", "secret", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
