"""How fast ``gzip_stream`` compresses, and to what size: this build against another, on the same files.

    python benchmarks/gzip_speed.py [--baseline DIR] [--runs 3] FILE [FILE ...]

Each FILE (a layer tar, or any bytes) is compressed by ``regtool.image.compression.gzip_stream`` in a child
process, from memory into a discarding sink that still counts and hashes, as a push does; the best of ``--runs``
is kept. ``--baseline DIR`` runs the same in a second child with ``DIR`` (another version's ``regtool`` package,
e.g. a ``git archive`` of an older commit) first on ``PYTHONPATH``, interleaved. Prints seconds, MB/s and the
compressed size over the input's. Nothing here is a test: the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import io, json, sys, time
from regtool.image.compression import gzip_stream

class Sink:
    def write(self, data):
        return len(data)

data = open(sys.argv[1], "rb").read()
best = None
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    result = gzip_stream(io.BytesIO(data), Sink())
    took = time.perf_counter() - started
    best = took if best is None else min(best, took)
print(json.dumps({"seconds": best, "size": result.size, "input": len(data)}))
"""


def _measure(path: Path, runs: int, build: Path | None) -> dict[str, float]:
    home = ROOT if build is None else build
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(home), os.environ.get("PYTHONPATH", "")])}
    # Run from the build's own directory: ``-c`` puts the working directory first on the path.
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path.resolve()), str(runs)],
        env=env,
        cwd=home,
        check=True,
        capture_output=True,
        text=True,
    )
    measured: dict[str, float] = json.loads(out.stdout)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    builds: list[tuple[str, Path | None]] = [("this build", None)]
    if args.baseline is not None:
        builds.append(("baseline", args.baseline))
    print("| file | build | seconds | MB/s | size / input |")
    print("|---|---|---|---|---|")
    for path in args.files:
        for name, build in builds:
            m = _measure(path, args.runs, build)
            print(
                f"| {path.name} ({m['input'] / 1e6:.0f} MB) | {name} | {m['seconds']:.3f} "
                f"| {m['input'] / m['seconds'] / 1e6:.0f} | {m['size'] / m['input']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
