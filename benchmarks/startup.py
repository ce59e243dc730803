"""Start-up cost of the ``regtool`` console script: small commands, interleaved across builds, medians.

    python benchmarks/startup.py [--runs 11] [--kinds version,help,tiny,tinypush] [BUILD ...]

A BUILD is a directory holding a ``regtool/`` package (say an older commit's, from ``git archive``), put first on
``PYTHONPATH``; ``-`` (the default) is the installed one. Every build's bytecode is compiled first, so no build
pays compilation during the runs. The kinds:

- ``version``: ``regtool --version``; ``help``: ``regtool --help``;
- ``tiny``: ``regtool pull -q`` of a one-layer image of 1 KiB from Debian's docker-registry on 127.0.0.1, into a
  fresh directory (nearly all of it is start-up, probe, manifest and two fsyncs);
- ``tinypush``: ``regtool push -q`` of that image to a new repository.

Prints the median of each kind per build and the 1-minute load average range seen before the runs.
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

from tests.support.distribution import run_distribution
from tests.support.images import write_random_image

KINDS = ("version", "help", "tiny", "tinypush")


def _argv(kind: str, host: str, layout: Path, out: Path, repo: str) -> list[str]:
    regtool = shutil.which("regtool") or str(Path(sys.executable).with_name("regtool"))
    if kind == "version":
        return [regtool, "--version"]
    if kind == "help":
        return [regtool, "--help"]
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
        package = Path(build) / "regtool" if build != "-" else None
        if package is not None and not package.is_dir():
            parser.error(f"{build} holds no regtool/ package")
        if package is not None:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    work = Path(tempfile.mkdtemp(prefix="regtool-startup-"))
    times: dict[tuple[str, str], list[float]] = {(kind, build): [] for kind in kinds for build in args.builds}
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
                        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
                        times[kind, build].append(time.perf_counter() - started)
                        shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for kind in kinds:
        medians = "  ".join(f"{build}: {statistics.median(times[kind, build]):.3f} s" for build in args.builds)
        print(f"{kind:9} {medians}")
    print(f"{args.runs} runs each, interleaved; load average (1 min) {min(loads):.2f}-{max(loads):.2f}")


if __name__ == "__main__":
    main()
