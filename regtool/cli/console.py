"""The consoles (results on stdout, everything else on stderr) and the one place where errors become messages
and exit codes.

Every command does its work inside :func:`run`: a :class:`regtool.errors.RegtoolError` (and the few OS errors a
local file can raise) becomes one line ``error: <message>`` on stderr and the exit code of its class; no traceback.
A traceback means a bug in regtool.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import typer

from regtool.errors import RegtoolError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXIT_CODES",
    "LazyConsole",
    "emit_bytes",
    "emit_json",
    "fail",
    "handle_errors",
    "real_console",
    "run",
    "stderr",
    "stdout",
    "warn",
]

T = TypeVar("T")

# Whether the command inside ``run`` was given --json (``warn`` writes a JSON event then).
_json_lines: ContextVar[bool] = ContextVar("regtool_json_lines", default=False)


# The print options under which a printable ASCII line comes out of rich unchanged (highlight False is the default).
_PLAIN_OPTIONS = {"markup": False, "highlight": False, "emoji": False}


class LazyConsole:
    """Stands for a rich ``Console(stderr=..., highlight=False, emoji=False, soft_wrap=True)``, made on first use.

    No emoji codes: output carries references, tags and registries' messages, and ``:ok:`` in them is text.

    Importing rich.console costs ~15 ms, and a command whose output is plain lines (``render.py``, with
    ``--quiet`` or ``--json`` progress) does not need it: ``print`` of one printable ASCII line without markup
    or emoji writes what rich would (rich changes only control characters and tabs, and wraps nothing under
    ``soft_wrap``), and ``file`` is the file rich would write to. Everything else is the real console's.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False, emoji=False, soft_wrap=True)
        return self._console

    @property
    def file(self) -> IO[str]:
        if self._console is not None:
            return self._console.file
        stream = sys.stderr if self._stderr else sys.stdout
        # As rich's Console.file: the real stream behind a live display's redirection.
        stream = getattr(stream, "rich_proxied_file", stream)
        return stream if stream is not None else self.console.file

    def print(self, *objects: Any, **options: Any) -> None:
        line = objects[0] if len(objects) == 1 else None
        plain = {"highlight": False, **options} == _PLAIN_OPTIONS
        if self._console is None and plain and isinstance(line, str) and line.isascii() and line.isprintable():
            self.file.write(line + "\n")
            self.file.flush()
        else:
            self.console.print(*objects, **options)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private and special names are this object's own (copy, pickle, a missing _console)
            raise AttributeError(name)
        return getattr(self.console, name)


# Typed as what they stand for: every attribute is the real Console's (see LazyConsole).
stderr = cast("Console", LazyConsole(stderr=True))
stdout = cast("Console", LazyConsole())


def real_console(console: Console) -> Console:
    """The rich Console itself behind ``stdout``/``stderr``, for rich's live displays (they use it in ``with``)."""
    return console.console if isinstance(console, LazyConsole) else console


# Documented in README.md ("Exit codes"); a test keeps the two in step.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "failure: the registry or the operation failed",
    2: "usage error: bad option, reference, path or local image",
    3: "not found: repository, tag, manifest or blob",
    4: "authentication or authorization failed",
    5: "integrity: content did not match its digest or size",
    6: "network: connection refused, DNS, TLS or timeout",
    7: (
        "protocol: the registry does not speak the API asked for (or refuses it as UNSUPPORTED, e.g. deletes "
        "turned off), or no registry answered"
    ),
    130: (
        "interrupted (Ctrl-C); partial transfers are kept for a resume (a docker-archive push sends the layer it "
        "was compressing again)"
    ),
}


# What Ctrl-C says; blob downloads keep their partials and pushes their upload sessions.
INTERRUPTED = "interrupted; what was transferred is kept: run the same command again to resume"


def fail(message: str, exit_code: int, *, json_lines: bool = False) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with ``exit_code``.

    With ``json_lines`` (a command run with ``--json``) the line is a JSON event instead, so that stderr stays
    machine-readable: ``{"event": "error", "message": ..., "exit_code": ...}``.
    """
    if json_lines:
        record = {"event": "error", "message": _one_line(message), "exit_code": exit_code}
        stderr.file.write(json.dumps(record) + "\n")
        stderr.file.flush()
    else:
        from rich.markup import escape

        stderr.print(f"[bold red]error:[/] {escape(_one_line(message))}", markup=True, highlight=False, emoji=False)
    raise typer.Exit(exit_code)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr, or a JSON ``warning`` event when the running command has ``--json``."""
    if _json_lines.get():
        record = {"event": "warning", "message": _one_line(message)}
        stderr.file.write(json.dumps(record) + "\n")
        stderr.file.flush()
    else:
        # emoji=False too: a plain line then goes out without loading rich (LazyConsole's plain path).
        stderr.print(f"warning: {_one_line(message)}", markup=False, highlight=False, emoji=False)


def emit_json(value: Any) -> None:
    """Write one JSON document (a command's result) to stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit_bytes(data: bytes) -> None:
    """Write bytes to stdout as they are (``inspect --raw``)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@contextmanager
def handle_errors(*, json_lines: bool = False) -> Iterator[None]:
    """Turn regtool errors raised inside into ``error: ...`` and their exit code (see :func:`fail`)."""

    def report(message: str, exit_code: int) -> NoReturn:
        fail(message, exit_code, json_lines=json_lines)

    try:
        yield
    except RegtoolError as exc:
        report(str(exc), exc.exit_code)
    except BaseExceptionGroup as group:
        # Task groups wrap what their tasks raised; report the first regtool error, re-raise bugs.
        matched, rest = group.split(RegtoolError)
        first = _first_leaf(matched) if matched is not None else None
        if first is not None and (rest is None or all(isinstance(e, KeyboardInterrupt) for e in _leaves(rest))):
            report(str(first), first.exit_code)
        if rest is not None and any(isinstance(e, KeyboardInterrupt) for e in _leaves(rest)):
            report(INTERRUPTED, 130)
        raise
    except KeyboardInterrupt:
        report(INTERRUPTED, 130)
    except FileNotFoundError as exc:
        report(f"no such file or directory: {exc.filename}", 2)
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        report(f"{exc.strerror}: {exc.filename}", 2)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            # A read-only file system is a path the user cannot write to, as a permission error is: both exit 2.
            report(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc), 2)
        where = f": {exc.filename}" if exc.filename else ""
        report(f"{exc.strerror or exc}{where}", 1)


def run(main: Callable[[], Awaitable[T]], *, json_lines: bool = False) -> T:
    """Run one async library call under asyncio; map regtool errors to a one-line message and exit code."""
    token = _json_lines.set(json_lines)
    try:
        with handle_errors(json_lines=json_lines):
            # Here, not at the top: asyncio is a large import that ``--version`` and ``--help`` never need.
            import asyncio

            return asyncio.run(_called(main))
    finally:
        _json_lines.reset(token)
    raise AssertionError("unreachable")  # handle_errors exits or re-raises


async def _called(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _first_leaf(group: BaseExceptionGroup[RegtoolError]) -> RegtoolError | None:
    for exc in _leaves(group):
        if isinstance(exc, RegtoolError):
            return exc
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"
