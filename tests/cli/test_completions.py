"""The completion scripts in completions/ are generated from the CLI, current, and work in bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from regtool.cli.completions import command_specs, main, render_all
from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "completions"


def test_scripts_are_not_stale() -> None:
    expected = render_all()
    for name, text in expected.items():
        path = COMPLETIONS / name
        assert path.exists(), f"{path} is missing; run: python -m regtool.cli.completions"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale; run: python -m regtool.cli.completions"


def test_check_mode_reports_stale_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert "stale completion scripts" in capsys.readouterr().err
    assert main(["--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_regtool", "regtool.bash", "regtool.fish"]
    assert main(["--dir", str(tmp_path), "--check"]) == 0


def test_specs_follow_the_commands() -> None:
    root, commands = command_specs()
    names = [c.name for c in commands]
    assert {"probe", "pull", "push", "tags", "catalog", "inspect", "delete", "serve"} <= set(names)
    assert names == sorted(names)
    assert ("--version",) in [o.names for o in root.options]
    pull = next(c for c in commands if c.name == "pull")
    by_name = {n: o for o in pull.options for n in o.names}
    assert by_name["--format"].choices == ("oci", "docker-archive")
    assert by_name["--protocol"].choices == ("auto", "v1", "v2")
    assert by_name["-j"].takes_value and by_name["--jobs"] is by_name["-j"]
    assert not by_name["--json"].takes_value
    assert by_name["-v"].repeatable
    assert by_name["--ca-cert"].kind == "file"
    assert [a.metavar for a in pull.arguments] == ["IMAGE", "DEST"]
    assert [a.kind for a in pull.arguments] == ["", "path"]


def _bash_complete(words: list[str], cwd: Path) -> list[str]:
    script = COMPLETIONS / "regtool.bash"
    line = " ".join(words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        "_regtool\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", program], cwd=cwd, capture_output=True, text=True, check=True)
    return [w for w in result.stdout.splitlines() if w]


@pytest.mark.interop
def test_bash_script_completes(tmp_path: Path) -> None:
    bash = require_binary("bash")
    subprocess.run([bash, "-n", str(COMPLETIONS / "regtool.bash")], check=True)
    (tmp_path / "layout").mkdir()
    (tmp_path / "image.tar").write_bytes(b"")
    assert "pull" in _bash_complete(["regtool", "pu"], tmp_path)
    assert _bash_complete(["regtool", "pu"], tmp_path) == ["pull", "push"]
    assert _bash_complete(["regtool", "--ver"], tmp_path) == ["--version"]
    assert _bash_complete(["regtool", "pull", "--form"], tmp_path) == ["--format"]
    assert _bash_complete(["regtool", "pull", "--format", "d"], tmp_path) == ["docker-archive"]
    assert _bash_complete(["regtool", "push", "--protocol", ""], tmp_path) == ["auto", "v1", "v2"]
    # pull IMAGE [DEST]: no completion for the image, file names for DEST (after skipping an option's value).
    assert _bash_complete(["regtool", "pull", ""], tmp_path) == []
    assert sorted(_bash_complete(["regtool", "pull", "-j", "4", "img", ""], tmp_path)) == ["image.tar", "layout"]
    assert _bash_complete(["regtool", "push", "la"], tmp_path) == ["layout"]
    # bash splits an image reference at its colons: the pieces are one argument, and DEST comes after them.
    split = ["127.0.0.1", ":", "5055/team/app", ":", "1.0"]
    assert sorted(_bash_complete(["regtool", "pull", *split, ""], tmp_path)) == ["image.tar", "layout"]


@pytest.mark.interop
@pytest.mark.parametrize(("shell", "name"), [("zsh", "_regtool"), ("fish", "regtool.fish")])
def test_other_shells_parse_their_script(shell: str, name: str) -> None:
    binary = require_binary(shell)
    subprocess.run([binary, "-n", str(COMPLETIONS / name)], check=True)


@pytest.mark.interop
def test_a_group_completes_its_subcommands_and_their_options(tmp_path: Path) -> None:
    require_binary("bash")
    _, commands = command_specs()
    serve = next(c for c in commands if c.name == "serve")
    assert serve.subcommands == ("gc",)
    assert "serve gc" in [c.name for c in commands]
    assert "serve gc" not in _bash_complete(["regtool", "se"], tmp_path)
    assert _bash_complete(["regtool", "serve", "g"], tmp_path) == ["gc"]
    gc_options = ["--gc-delay", "--gc-delete-untagged", "--gc-interval"]
    assert sorted(_bash_complete(["regtool", "serve", "--gc-"], tmp_path)) == gc_options
    assert sorted(_bash_complete(["regtool", "serve", "gc", "--del"], tmp_path)) == ["--delay", "--delete-untagged"]
    # After the subcommand, the group's own options are not offered.
    assert _bash_complete(["regtool", "serve", "gc", "--po"], tmp_path) == []
