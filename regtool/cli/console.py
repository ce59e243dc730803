"""The rich console on stderr and the one place where errors become messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import anyio
import typer
from rich.console import Console

from regtool.errors import CancelledTransfer, RegtoolError

__all__ = ["EXIT_CODES", "fail", "run", "stderr", "stdout"]

T = TypeVar("T")

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)

# Documented in README.md ("Exit codes"); a test keeps the two in step.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "failure: the registry or the operation failed",
    2: "usage error: bad option, reference, path or local image",
    3: "not found: repository, tag, manifest or blob",
    4: "authentication or authorization failed",
    5: "integrity: content did not match its digest or size",
    6: "network: connection refused, DNS, TLS or timeout",
    7: "protocol: the registry does not speak the API asked for, or no registry answered",
    130: "interrupted (Ctrl-C); partial transfers are kept for a resume",
}


def fail(message: str, exit_code: int) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(exit_code)


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run one async library call under anyio; map regtool errors to a one-line message and exit code."""
    try:
        return anyio.run(main)
    except CancelledTransfer as exc:
        fail(str(exc), exc.exit_code)
    except RegtoolError as exc:
        fail(_one_line(str(exc)), exc.exit_code)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"
