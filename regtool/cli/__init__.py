"""The command line: typer + rich on top of the library. One module per command.

``main()`` is the console script. Each command module registers itself on ``app`` when imported; the shell
completion scripts in ``completions/`` are generated from the result (``python -m regtool.cli.completions``).
"""

from __future__ import annotations

# Each command module registers itself on ``app`` when imported. ``copy`` and ``demo`` (registry v1 work) and
# ``login``/``logout`` (auth) join this list when they exist.
from regtool.cli import (  # noqa: F401
    catalog,
    copy,
    delete,
    demo,
    inspect,
    login,
    probe,
    pull,
    push,
    serve,
    tags,
)
from regtool.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Run the ``regtool`` command line."""
    app()
