"""What a command loads before its work starts: only its own command, no rich for plain output, no progress bars
without a terminal, and the client package without httpx until a Client is used (so the TLS warm-up starts first)."""

from __future__ import annotations

import inspect
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command_name

from regtool.cli import _REGISTRY_COMMANDS, COMMAND_MODULES, _only_the_command_named, app
from regtool.cli.console import LazyConsole
from tests.cli.support import in_process
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, serve  # noqa: F401  (the fixture)


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
    for first in ([], ["--help"], ["pul"], ["-h"]):
        assert _only_the_command_named(first) is app


# Run as ``python -c CODE ARGS...``: runs the command line with ARGS, then prints which of the modules named in the
# environment's REGTOOL_WATCH were imported, and every load of CA certificates (system store or file).
_RUN_AND_REPORT = """
import atexit, os, ssl, sys
loads = []
real_default, real_file = ssl.SSLContext.load_default_certs, ssl.SSLContext.load_verify_locations
def load_default(context, *args): loads.append("system store"); return real_default(context, *args)
def load_file(context, *args, **kwargs): loads.append("file"); return real_file(context, *args, **kwargs)
ssl.SSLContext.load_default_certs, ssl.SSLContext.load_verify_locations = load_default, load_file
watched = os.environ["REGTOOL_WATCH"].split()
atexit.register(lambda: print("imported", sorted(m for m in watched if m in sys.modules), "CA loads", loads))
sys.argv = ["regtool", *sys.argv[1:]]
from regtool.cli import main
main()
"""

# What no one-shot command needs: the other commands, v1's walk and the local image formats, the server, blob
# downloads, and the results of the other operations.
_NOT_FOR_ONE_SHOTS = [
    *(f"regtool.cli.{module}" for module in ("catalog", "copy", "demo", "pull", "push", "serve", "serve_gc", "sync")),
    "regtool.client.v1.api",
    "regtool.client.v1.pull",
    "regtool.client.v2.rangefetch",
    "regtool.client.v2.blobdownload",
    "regtool.client.results.probe",
    "regtool.client.results.transfer",
    "regtool.image.blobstore",
    "regtool.image.docker_archive",
    "regtool.image.compression",
    "regtool.server",
    "anyio",
    "httpcore",
]


def _run_and_report(*args: str, watch: list[str]) -> str:
    env = {**os.environ, "REGTOOL_WATCH": " ".join(watch)}
    env.pop("SSL_CERT_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1]


def test_version_builds_no_command_and_loads_no_value_module() -> None:
    watch = ["regtool.cli.options", "regtool.digest", "regtool.manifest", "regtool.reference", "httpx", "asyncio"]
    watch += [f"regtool.cli.{module}" for module in set(COMMAND_MODULES.values())]
    assert _run_and_report("--version", watch=watch) == "imported [] CA loads []"


@pytest.mark.parametrize("command", ["inspect", "tags"])
def test_a_one_shot_on_a_plain_http_loopback_registry_loads_no_ca_store_and_no_v1(
    command: str,
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, "1", count=1, size=1024)
    assert in_process("push", "-q", f"{layout}:1", f"{serve.host}/one/shot:1").returncode == 0
    target = f"{serve.host}/one/shot:1" if command == "inspect" else f"{serve.host}/one/shot"
    assert _run_and_report(command, target, watch=_NOT_FOR_ONE_SHOTS) == "imported [] CA loads []"


def test_a_pull_into_a_layout_loads_no_archive_writer_and_no_other_results(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, "1", count=1, size=1024)
    assert in_process("push", "-q", f"{layout}:1", f"{serve.host}/one/pull:1").returncode == 0
    watch = [
        "regtool.image.docker_archive",
        "regtool.image.layer_unpack",
        "regtool.image.compression",
        "tarfile",
        "isal",
        "regtool.client.results.image",
        "regtool.client.results.probe",
        "regtool.client.results.transfer",
        "anyio",
        "httpcore",
    ]
    report = _run_and_report("pull", "-q", f"{serve.host}/one/pull:1", str(tmp_path / "out"), watch=watch)
    assert report == "imported ['regtool.client.results.transfer'] CA loads []"
    assert (tmp_path / "out" / "index.json").is_file()


def test_a_no_op_sync_loads_no_results_and_no_transfer_code(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, "1", count=1, size=1024)
    assert in_process("push", "-q", f"{layout}:1", f"{serve.host}/one/sync:1").returncode == 0
    argv = ("sync", "--quiet", f"{serve.host}/one/sync", f"{serve.host}/mirror")
    assert in_process(*argv).returncode == 0  # the first run copies; the second finds nothing to do
    watch = [
        "regtool.client.results.image",
        "regtool.client.results.probe",
        "regtool.client.results.transfer",
        "regtool.client.v2.rangefetch",
        "regtool.image.docker_archive",
        "anyio",
        "httpcore",
    ]
    assert _run_and_report(*argv, watch=watch) == "imported [] CA loads []"


# The client runs on asyncio alone, over its own transport: neither anyio nor httpcore (which imports anyio) is
# loaded by a registry command (the one-shot and pull rules above watch them), nor by a program using the
# library's Client.
_NOT_FOR_THE_CLIENT = {"anyio", "httpcore", "sniffio"}


def test_the_library_client_imports_no_anyio(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    write_random_image(layout, "1", count=1, size=1024)
    assert in_process("push", "-q", f"{layout}:1", f"{serve.host}/no/anyio:1").returncode == 0
    code = f"""
import asyncio, sys
from pathlib import Path
import regtool

async def main():
    async with regtool.Client() as client:
        ref = regtool.Reference.parse("{serve.host}/no/anyio:1")
        print((await client.inspect(ref)).digest == (await client.pull(ref, Path(sys.argv[1]))).digest)

asyncio.run(main())
print(sorted(name for name in sys.modules if name.partition(".")[0] in {sorted(_NOT_FOR_THE_CLIENT)!r}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "[]"]


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
    consoles: tuple[LazyConsole | Console, ...] = (LazyConsole(), Console(highlight=False, emoji=False, soft_wrap=True))
    for console in consoles:
        out = io.StringIO()
        with redirect_stdout(out):
            console.print(*objects, **options)
        written.append(out.getvalue())
    assert written[0] == written[1]


def test_the_console_script_imports_without_the_collector_and_runs_the_command_with_it() -> None:
    code = """
import gc, sys
import regtool.cli as cli
seen = []
real_prepare, real_run = cli.prepare, cli.run
def prepare(args):
    seen.append(("prepare", gc.isenabled()))
    return real_prepare(args)
def run(command):
    seen.append(("run", gc.isenabled(), gc.get_freeze_count() > 0))
    real_run(command)
cli.prepare, cli.run = prepare, run
sys.argv = ["regtool", "--version"]
from regtool.console import main
try:
    main()
except SystemExit:
    pass
print(seen)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.splitlines()[-1] == "[('prepare', False), ('run', True, True)]"
