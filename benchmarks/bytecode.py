"""Bytecode for what a benchmark runs, compiled once before its runs, as ``pip install`` leaves an installation.

pip compiles every module it installs, but not under ``PYTHONDONTWRITEBYTECODE=1`` (set in some environments,
this machine's among them), and a working tree's sources may be newer than their ``.pyc``. Either way every run
would compile the modules it imports again: tens of milliseconds of "start-up" that no installed regtool pays.
So the benchmarks compile regtool (and any older build they compare), and the interpreter's site-packages.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import regtool

__all__ = ["compile_for_runs"]


def compile_for_runs(*builds: Path) -> None:
    """Compile the installed regtool, the ``regtool`` packages of ``builds`` and the site-packages, in a child
    process (compiling here would grow this process, whose size every child it spawns starts from)."""
    packages = [Path(regtool.__file__).parent, *(build / "regtool" for build in builds)]
    directories = [*map(str, packages), sysconfig.get_paths()["purelib"]]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *directories], check=True)
