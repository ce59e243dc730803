"""What a command loads before its work starts: only its own command, no rich for plain output, no progress bars
without a terminal, and the client package without httpx until a Client is used (so the TLS warm-up starts first)."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
from contextlib import redirect_stdout
from typing import Any

import pytest
import typer
from typer.main import get_command_name

from regtool.cli import _REGISTRY_COMMANDS, COMMAND_MODULES, _only_the_command_named, app
from regtool.cli.console import LazyConsole


def _names(typer_app: typer.Typer) -> list[str]:
    commands = [
        info.name or get_command_name(info.callback.__name__)
        for info in typer_app.registered_commands
        if info.callback is not None
    ]
    return commands + [info.name for info in typer_app.registered_groups if isinstance(info.name, str)]


def test_a_named_command_is_built_alone_and_app_keeps_them_all() -> None:
    everything = _names(app)
    assert _names(_only_the_command_named(["pull"])) == ["pull"]
    assert _names(_only_the_command_named(["logout"])) == ["logout"]
    assert _names(_only_the_command_named(["serve"])) == ["serve"]
    assert _names(app) == everything
    assert {"pull", "push", "logout", "serve"} <= set(everything)


def test_the_tls_warm_up_list_is_the_commands_with_connection_options() -> None:
    connecting = {
        info.name or get_command_name(info.callback.__name__)
        for info in app.registered_commands
        if info.callback is not None and "insecure" in inspect.signature(info.callback).parameters
    }
    assert connecting == _REGISTRY_COMMANDS


def test_every_command_has_its_module_named() -> None:
    assert set(COMMAND_MODULES) == set(_names(app))


@pytest.mark.parametrize("command", ["inspect", "tags", "logout", "serve"])
def test_a_named_command_imports_its_module_alone(command: str) -> None:
    code = (
        "import sys; from typer.main import get_command_name; from regtool.cli import _only_the_command_named; "
        f"single = _only_the_command_named([{command!r}]); "
        "names = [i.name or get_command_name(i.callback.__name__) for i in single.registered_commands] "
        "+ [g.name for g in single.registered_groups]; "
        "print(names, sorted(m for m in sys.modules if m.startswith('regtool.cli.') and m[12:] in sys.argv[1:]))"
    )
    modules = sorted(set(COMMAND_MODULES.values()) | {"serve"})
    proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, check=True)
    imported = (
        ["regtool.cli.serve", "regtool.cli.serve_gc"]
        if command == "serve"
        else [f"regtool.cli.{COMMAND_MODULES[command]}"]
    )
    assert proc.stdout == f"{[command]} {imported}\n"


def test_anything_else_gets_every_command() -> None:
    for first in ([], ["--help"], ["--version"], ["pul"], ["-h"]):
        assert _only_the_command_named(first) is app


def test_light_modules_do_not_import_httpx_or_rich() -> None:
    code = (
        "import sys, regtool.cli, regtool.client.net.tls, regtool.client.progress, regtool.cli.progress; "
        "from regtool.cli.console import stdout; "
        "stdout.print('pulled  x', markup=False, highlight=False, emoji=False); "
        "print(sorted(m for m in ('httpx', 'rich.console', 'rich.progress', 'regtool.client.client') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == "pulled  x\n[]\n"


def test_client_and_rich_progress_still_import_on_use() -> None:
    from regtool.cli.progress import RichProgress
    from regtool.client import Client

    assert Client.__name__ == "Client"
    assert RichProgress.__module__ == "regtool.cli.bars"


@pytest.mark.parametrize(
    ("objects", "options"),
    [
        (("digest  sha256:abc",), {"markup": False, "highlight": False, "emoji": False}),
        (("",), {"markup": False, "highlight": False, "emoji": False}),
        (("to      ./a\tb (oci)",), {"markup": False, "highlight": False, "emoji": False}),
        (("bell\a and cr\r",), {"markup": False, "highlight": False, "emoji": False}),
        (("caf\u00e9 :smile:",), {"markup": False, "highlight": False, "emoji": False}),
        (("[bold]x[/] :smile:",), {"markup": False, "highlight": False}),
        (("[bold]x[/] :smile:",), {}),
        (("a", "b"), {"markup": False, "highlight": False, "emoji": False}),
        (("http://h/v2/ 200",), {"markup": False, "highlight": True, "emoji": False}),
    ],
)
def test_lazy_console_prints_what_rich_prints(objects: tuple[str, ...], options: dict[str, Any]) -> None:
    from rich.console import Console

    written: list[str] = []
    consoles: tuple[LazyConsole | Console, ...] = (LazyConsole(), Console(highlight=False, soft_wrap=True))
    for console in consoles:
        out = io.StringIO()
        with redirect_stdout(out):
            console.print(*objects, **options)
        written.append(out.getvalue())
    assert written[0] == written[1]
