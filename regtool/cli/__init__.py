"""The command line: typer + rich on top of the library. One module per command.

``main()`` is the console script. Each command module registers itself on ``app`` when imported; the shell
completion scripts in ``completions/`` are generated from the result (``python -m regtool.cli.completions``).
"""

from __future__ import annotations

import gc
import importlib
import sys
from copy import copy as shallow_copy
from typing import TYPE_CHECKING

from typer.main import get_command_name

# httpx imports its own command line (click, pygments, rich.syntax: ~30 ms) when those happen to be installed,
# as they are beside typer; regtool never runs it. A None entry makes that optional import fail, and httpx then
# defines a stub in its place. Only when httpx is not loaded yet: an embedding program keeps whatever it has.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
# httpcore imports trio (~60 ms) whenever it is installed (selenium brings it, for one), to support it as an
# async backend; the command line runs on asyncio only. Only when trio is not loaded yet, as above.
sys.modules.setdefault("trio", None)  # type: ignore[arg-type]

from regtool.cli.app import app  # noqa: E402

if TYPE_CHECKING:
    import typer
    from typer.models import CommandInfo, TyperInfo

__all__ = ["COMMAND_MODULES", "app", "main", "prepare", "run"]

# The module that registers each command on ``app`` when imported, in the order they are registered. A run of
# one command imports its module alone; anything that reads the command lists (the help, completions, a test
# driving ``app``) imports them all first.
COMMAND_MODULES = {
    "catalog": "catalog",
    "copy": "copy",
    "delete": "delete",
    "demo": "demo",
    "inspect": "inspect",
    "login": "login",
    "logout": "login",
    "probe": "probe",
    "pull": "pull",
    "push": "push",
    "serve": "serve_gc",  # the serve group with its subcommands
    "sync": "sync",
    "tags": "tags",
}

# The commands that connect to registries through a Client built from the connection options.
_REGISTRY_COMMANDS = frozenset(
    {"catalog", "copy", "delete", "inspect", "login", "probe", "pull", "push", "sync", "tags"}
)


def main() -> None:
    """Run the ``regtool`` command line with ``sys.argv`` (``regtool.console.main`` is the console script)."""
    run(prepare(sys.argv[1:]))


def prepare(args: list[str]) -> typer.Typer:
    """What a run of ``args`` needs before its command runs, in place: ``app`` with that command alone, its
    modules imported, and for a registry command, its connection opened and the CA store loading in threads."""
    first = args[:1]
    registry_command = bool(first) and first[0] in _REGISTRY_COMMANDS
    if registry_command:
        # The registry's connections are opened in a thread while the command's modules import, ready for the
        # first request (when this command line surely makes it: preconnect.py decides).
        from regtool.cli import preconnect

        preconnect.start(args)
        if _may_verify_tls(args[1:]):
            # The system CA store (~20 ms to load) is loaded in a thread while the command's imports run, ready
            # for the first TLS handshake.
            from regtool.client.net.tls import warm_default_context

            warm_default_context()
    command = _only_the_command_named(first)
    if registry_command:
        # What every registry command imports once it runs (its Client), imported here with the rest, before the
        # console script turns the collector back on.
        import regtool.client.client  # noqa: F401
    return command


def run(command: typer.Typer) -> None:
    """Run the command ``prepare`` made ready."""
    try:
        command()
    finally:
        # The interpreter's last collection at exit walks every object the imports made (~30 ms of a ~0.3 s
        # start-up); frozen objects are skipped. Files and sockets are closed explicitly before this point.
        gc.freeze()


def _may_verify_tls(args: list[str]) -> bool:
    """Whether a registry command with these arguments may verify a server's certificate with the system CA
    store: not with ``--plain-http`` or ``--insecure``, and not when it names a registry on this machine (usually
    plain HTTP, asked over https and http at once: the store is loaded only if the https side answers in TLS)."""
    from regtool.reference import is_loopback_host

    if "--plain-http" in args or "--insecure" in args:
        return False
    hosts = (arg.removeprefix("docker://").partition("/")[0] for arg in args if not arg.startswith("-"))
    return not any(is_loopback_host(host) for host in hosts)


def _only_the_command_named(first: list[str]) -> typer.Typer:
    """``app`` with only the command that ``first`` (the first argument) names, when it names one; else ``app``.

    A run needs one command: its module alone is imported (the others cost 10-40 ms of imports: the server's
    configuration, the demo's image builder), and typer turns only it into a click command (parameters, help
    texts). ``--version`` needs none. Anything else (no argument, ``--help``, an unknown name) gets them all, so
    help listings and "no such command" messages stay as they were.
    """
    if first == ["--version"]:  # answered by the root's eager option, before any command is looked at
        return _app_with([], [])
    module = COMMAND_MODULES.get(first[0]) if first else None
    if module is None:
        return app
    with app.only_what_is_imported():
        importlib.import_module(f"regtool.cli.{module}")
        chosen = [info for info in app.registered_commands if _command_name(info) == first[0]]
        # A group (``serve``, with its subcommands) is kept whole: its callback and subcommands are one job.
        groups = [info for info in app.registered_groups if _group_name(info) == first[0]]
    return _app_with(chosen, groups)


def _app_with(commands: list[CommandInfo], groups: list[TyperInfo]) -> typer.Typer:
    single = shallow_copy(app)
    single.register_on_first_read(None)
    single.registered_commands = commands
    single.registered_groups = groups
    return single


def _register_every_command() -> None:
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(f"regtool.cli.{module}")


app.register_on_first_read(_register_every_command)


def _command_name(info: CommandInfo) -> str:
    return info.name or get_command_name(info.callback.__name__ if info.callback else "")


def _group_name(info: TyperInfo) -> str:
    return info.name if isinstance(info.name, str) else ""  # typer's DefaultPlaceholder when none was given
