"""The command line: typer + rich on top of the library. One module per command.

``main()`` is the console script. Each command module registers itself on ``app`` when imported; the shell
completion scripts in ``completions/`` are generated from the result (``python -m regtool.cli.completions``).
"""

from __future__ import annotations

import gc
import sys

# httpx imports its own command line (click, pygments, rich.syntax: ~30 ms) when those happen to be installed,
# as they are beside typer; regtool never runs it. A None entry makes that optional import fail, and httpx then
# defines a stub in its place. Only when httpx is not loaded yet: an embedding program keeps whatever it has.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# Each command module registers itself on ``app`` when imported. ``copy`` and ``demo`` (registry v1 work) and
# ``login``/``logout`` (auth) join this list when they exist.
from regtool.cli import (  # noqa: E402, F401
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
from regtool.cli.app import app  # noqa: E402

__all__ = ["app", "main"]


def main() -> None:
    """Run the ``regtool`` command line."""
    try:
        app()
    finally:
        # The interpreter's last collection at exit walks every object the imports made (~30 ms of a ~0.3 s
        # start-up); frozen objects are skipped. Files and sockets are closed explicitly before this point.
        gc.freeze()
