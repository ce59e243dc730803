"""The ``regtool`` console script (and ``python -m regtool``): the command line, started without the collector.

Most of a command's start-up is imports (typer, httpx, the client), which make objects by the hundred thousand;
each few hundred new objects trigger a collection pass over the young ones, and none of those passes can free
anything, since every module, class and function made is kept. So the collector is off until the command's
modules are in (``regtool.cli.prepare``); what they made is then frozen (moved where no pass looks again) and the
collector turned back on before the command runs, as usual. Only this entry point does so: a program that imports
``regtool.cli`` or the library keeps its own collector settings.
"""

from __future__ import annotations

import gc
import sys

__all__ = ["main"]


def main() -> None:
    """Run the ``regtool`` command line with ``sys.argv``."""
    gc.disable()
    try:
        from regtool.cli import prepare, run

        command = prepare(sys.argv[1:])
        gc.freeze()
    finally:
        gc.enable()
    run(command)
