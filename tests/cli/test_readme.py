"""README.md states facts that code owns: the exit codes, the two first commands, the test command."""

from __future__ import annotations

import re
from pathlib import Path

from regtool.cli.console import EXIT_CODES

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_exit_code_table_matches_exit_codes() -> None:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", _section("Exit codes"), flags=re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert README.index("```sh") < README.index("\n## ")
    assert first_block.splitlines() == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/regtool demo",
        "bash .ci/run",
    ]


def test_ci_runs_the_readme_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    marker = next(i for i, line in enumerate(script) if "README's test command" in line)
    command = script[marker + 1].strip()
    assert command.startswith(".venv/bin/python -m pytest")
    commands = [line.strip() for line in script if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == command, "the README's test command must stay .ci/run's last command"
    development = _section("Development")
    assert command in development
    assert "The last line is the test command `.ci/run` runs." in development
