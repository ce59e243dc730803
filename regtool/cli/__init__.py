"""The command line: typer + rich on top of the library. One module per command."""

from __future__ import annotations

# Each command module registers itself on ``app`` when imported.
from regtool.cli import (  # noqa: F401
    serve,
)
from regtool.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
