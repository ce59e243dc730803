"""The typer application every command module registers itself on.

It is also where what click decides on its own ends the way every other failure does: a usage error (a missing
argument, a bad option value, an unknown option) is one ``error: ...`` line, or one JSON error line under
``--json``, with exit code 2, instead of typer's boxed panel. And a stdout closed by its reader (``regtool inspect
... | head -1``) ends the run quietly with :data:`STDOUT_CLOSED`, the shell's code for a process that SIGPIPE
stopped, instead of typer's silent exit 1 or a traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperCommand, TyperGroup

from regtool.__about__ import __version__

if TYPE_CHECKING:
    from typer._click import Context
    from typer.models import CommandFunctionType, CommandInfo, TyperInfo

__all__ = ["STDOUT_CLOSED", "RegtoolCommand", "RegtoolGroup", "app", "stdout_closed"]

# 128 + SIGPIPE: what a shell reports for a program that a closed pipe stopped (``yes | head -1`` under pipefail).
STDOUT_CLOSED = 141


def stdout_closed() -> NoReturn:
    """End the run after a write to stdout found it closed: no message (the reader chose to stop), exit 141.

    stdout is pointed at /dev/null first, as Python's documentation on SIGPIPE recommends, so the interpreter's
    final flush of what is still buffered does not fail again with "Exception ignored ... BrokenPipeError".
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind sys.stdout (an in-process test's buffer)
        pass
    raise typer.Exit(STDOUT_CLOSED)


def _is_epipe(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_epipe(inner) for inner in exc.exceptions)
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


def _wants_json(args: Sequence[str]) -> bool:
    options = list(args)
    if "--" in options:
        options = options[: options.index("--")]
    return "--json" in options


def _usage_message(exc: ClickException) -> str:
    """click's message as one line in regtool's style, with where to read more."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx: Context | None = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see {ctx.command_path} --help)"
    return message


class RegtoolCommand(TyperCommand):
    """A command whose usage line names its arguments as the help does (``IMAGE``, not typer's ``{IMAGE}``)."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if len(p) > 2 and p[0] == "{" and p[-1] == "}" else p for p in pieces]


class RegtoolGroup(TyperGroup):
    """The ``regtool`` group: click's usage errors as ``error:`` lines (exit 2), a closed stdout as exit 141."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        from regtool.cli.console import fail

        try:
            # Not standalone: click's exceptions come out here instead of being printed as typer's panels.
            code = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as exc:
            # The help is already on stdout (typer prints it while the error is made); say why it came.
            code = _exit_code(fail, f"no command given; see {exc.ctx.command_path} --help", exc.exit_code, argv)
        except ClickException as exc:
            code = _exit_code(fail, _usage_message(exc), exc.exit_code, argv)
        except typer.Abort:
            code = _exit_code(fail, "aborted", 1, argv)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (OSError, BaseExceptionGroup) as exc:
            if not _is_epipe(exc):
                raise
            stdout_closed()


def _exit_code(fail: Callable[..., NoReturn], message: str, code: int, argv: Sequence[str]) -> int:
    try:
        fail(message, code, json_lines=_wants_json(argv))
    except typer.Exit as exit_:
        return exit_.exit_code


class _Typer(typer.Typer):
    """typer.Typer whose commands are RegtoolCommands unless a command asks for another class.

    Its command modules can be registered on first need (``register_on_first_read``): the first read of the
    command lists (typer building the parser, a test, the completion generator) imports them, while a run of one
    named command imports that command's module alone and never reads them before (``cli.main``).
    """

    _register: Callable[[], None] | None = None
    _commands: list[CommandInfo]
    _groups: list[TyperInfo]

    def register_on_first_read(self, register: Callable[[], None] | None) -> None:
        """Call ``register`` (which imports the command modules) when the command lists are first read; None:
        never (the modules a run needs are imported by the caller)."""
        self._register = register

    @contextmanager
    def only_what_is_imported(self) -> Iterator[None]:
        """Within: the command lists hold the commands of the modules imported so far, and reading them
        registers no more (a run of one command imports its module here)."""
        register, self._register = self._register, None
        try:
            yield
        finally:
            self._register = register

    def _registered(self) -> None:
        register, self._register = self._register, None
        if register is not None:
            register()

    @property
    def registered_commands(self) -> list[CommandInfo]:
        self._registered()
        return self._commands

    @registered_commands.setter
    def registered_commands(self, commands: list[CommandInfo]) -> None:
        self._commands = commands

    @property
    def registered_groups(self) -> list[TyperInfo]:
        self._registered()
        return self._groups

    @registered_groups.setter
    def registered_groups(self, groups: list[TyperInfo]) -> None:
        self._groups = groups

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=cls or RegtoolCommand, **kwargs)


app = _Typer(
    name="regtool",
    cls=RegtoolGroup,
    help="Move container images between registries and disk, over registry v1 and v2 / OCI.",
    no_args_is_help=True,
    # Completion scripts are generated into completions/ (python -m regtool.cli.completions), not installed
    # by typer at run time.
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"regtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Move container images between registries and disk, over registry v1 and v2 / OCI."""
