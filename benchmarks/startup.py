"""Start-up cost of the ``regtool`` console script: small commands, interleaved across builds, medians.

    python benchmarks/startup.py [--runs 11] [--kinds version,help,inspect,tags,tiny,tinypush] [BUILD ...]

A BUILD is a directory holding a ``regtool/`` package (say an older commit's, from ``git archive``), put first on
``PYTHONPATH``; ``-`` (the default) is the installed one. Every build's bytecode is compiled first, so no build
pays compilation during the runs. The kinds:

- ``version``: ``regtool --version``; ``help``: ``regtool --help``;
- ``inspect``, ``tags``: the one-shot commands, ``regtool inspect`` of that image and ``regtool tags`` of its
  repository (three requests and two);
- ``tiny``: ``regtool pull -q`` of a one-layer image of 1 KiB from Debian's docker-registry on 127.0.0.1, into a
  fresh directory (nearly all of it is start-up, probe, manifest and two fsyncs);
- ``tinypush``: ``regtool push -q`` of that image to a new repository.

Prints the median wall time and CPU seconds (user + system, of the process and its children) of each kind per
build, each build's ratio to the first, and the 1-minute load average range seen before the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import regtool
from benchmarks.bytecode import compile_for_runs
from tests.support.distribution import run_distribution
from tests.support.images import write_random_image

KINDS = ("version", "help", "inspect", "tags", "tiny", "tinypush")


def _argv(kind: str, host: str, layout: Path, out: Path, repo: str) -> list[str]:
    regtool = shutil.which("regtool") or str(Path(sys.executable).with_name("regtool"))
    if kind == "version":
        return [regtool, "--version"]
    if kind == "help":
        return [regtool, "--help"]
    if kind == "inspect":
        return [regtool, "inspect", f"{host}/bench/tiny:1"]
    if kind == "tags":
        return [regtool, "tags", f"{host}/bench/tiny"]
    if kind == "tiny":
        return [regtool, "pull", "-q", f"{host}/bench/tiny:1", str(out)]
    if kind == "tinypush":
        return [regtool, "push", "-q", f"{layout}:t", f"{host}/bench/{repo}:1"]
    raise SystemExit(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("builds", nargs="*", default=["-"])
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    for build in args.builds:
        package = Path(build) / "regtool" if build != "-" else Path(regtool.__file__).parent
        if not package.is_dir():
            parser.error(f"{build} holds no regtool/ package")
    compile_for_runs(*(Path(build) for build in args.builds if build != "-"))
    work = Path(tempfile.mkdtemp(prefix="regtool-startup-"))
    times: dict[tuple[str, str], list[float]] = {(kind, build): [] for kind in kinds for build in args.builds}
    cpu: dict[tuple[str, str], list[float]] = {(kind, build): [] for kind in kinds for build in args.builds}
    loads: list[float] = []
    try:
        layout = work / "tiny"
        write_random_image(layout, "t", count=1, size=1024)
        with run_distribution(work / "registry") as registry:
            seed = _argv("tinypush", registry.host, layout, work, "tiny")  # what "tiny" pulls
            subprocess.run(seed, check=True, stdout=subprocess.DEVNULL)
            for run in range(args.runs):
                for kind in kinds:
                    for number, build in enumerate(args.builds):
                        out = work / f"out-{run}-{kind}-{number}"
                        argv = _argv(kind, registry.host, layout, out, f"push{run}x{number}")
                        env = dict(os.environ)
                        if build != "-":
                            env["PYTHONPATH"] = build
                        os.sync()
                        loads.append(os.getloadavg()[0])
                        started = time.perf_counter()
                        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
                        _, status, usage = os.wait4(proc.pid, 0)
                        times[kind, build].append(time.perf_counter() - started)
                        cpu[kind, build].append(usage.ru_utime + usage.ru_stime)
                        if os.waitstatus_to_exitcode(status) != 0:
                            raise SystemExit(f"{' '.join(argv)} failed")
                        shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first = args.builds[0]
    for kind in kinds:
        cells = []
        for build in args.builds:
            wall, used = statistics.median(times[kind, build]), statistics.median(cpu[kind, build])
            cell = f"{build}: {wall:.3f} s ({used:.3f} CPU-s)"
            if build != first:
                base_wall, base_cpu = statistics.median(times[kind, first]), statistics.median(cpu[kind, first])
                cell += f" = {wall / base_wall:.2f} / {used / base_cpu:.2f} of {first}"
            cells.append(cell)
        print(f"{kind:9} {'  '.join(cells)}")
    print(f"{args.runs} runs each, interleaved; load average (1 min) {min(loads):.2f}-{max(loads):.2f}")


if __name__ == "__main__":
    main()
