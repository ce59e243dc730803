"""One timed run of a command, as the benchmarks measure it: wall time, CPU seconds and peak RSS of the child.

The peak RSS comes from GNU time (``%M``) when it is installed: ``ru_maxrss`` of a child that the benchmark spawns
directly (``os.wait4``) also counts the benchmark's own peak, which the child inherits with the address space it
is forked or vforked from (tens of MiB, with regtool and the test support imported), so every contestant would
read at least that. time forks from a ~1 MiB process and adds about a millisecond to the wall time, the same for
every contestant. ``sync`` runs first, so one run's dirty pages are not written back during the next.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GNU_TIME", "ChildRun", "run_child"]

GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    rss_mib: float
    load: float  # the 1-minute load average just before the run
    cpu_seconds: float  # user + system of the child (and of what it waited for)


def run_child(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ChildRun:
    """Run ``argv`` (stdout discarded); exit with its stderr's tail when it fails."""
    rss_file = Path(tempfile.gettempdir()) / f"regtool-bench-rss-{os.getpid()}"
    command = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *argv] if GNU_TIME else list(argv)
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block on a full pipe
        os.sync()
        load = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            stderr = errors.read().decode(errors="replace")
            raise SystemExit(f"{' '.join(argv)} failed ({os.waitstatus_to_exitcode(status)}): {stderr[-2000:]}")
    rss_kib = usage.ru_maxrss
    if GNU_TIME:
        rss_kib = int(rss_file.read_text().split()[-1])
        rss_file.unlink()
    return ChildRun(seconds, rss_kib / 1024, load, usage.ru_utime + usage.ru_stime)
