"""Where the loopback push, docker-archive push and copy bounds stand against this machine's CPU: the floor.

    python benchmarks/cpu_floor.py [--runs 5] [--kinds push,archive,copy] [--work DIR]

On loopback every byte a push moves is CPU on one of the machine's cores: the client's (reading, hashing,
compressing, sending) and the registry's (receiving, hashing, writing). The registry shares the cores with the
client, so no client can push faster than ``(client CPU + registry CPU) / cores``, even with every core busy
from the first instant to the last; this script measures both, for regtool and skopeo, interleaved, and sets
that floor beside each tool's wall time and beside the bound the issue gives as a share of skopeo's time:

- ``push``: ``regtool push --quiet LAYOUT IMAGE`` against ``skopeo copy oci:LAYOUT docker://IMAGE`` (16 x 32 MiB,
  bound 0.55 of skopeo's time), into a fresh docker-registry (distribution 2.8.2) each run;
- ``archive``: the same image as a docker-archive (uncompressed layers, compressed for the push), 2 x 256 MiB,
  ``regtool push --quiet ARCHIVE IMAGE`` against ``skopeo copy docker-archive:ARCHIVE docker://IMAGE`` (bound 0.8);
- ``copy``: registry to registry, ``regtool copy --quiet SRC DST`` against ``skopeo copy docker://SRC
  docker://DST`` (16 x 32 MiB, bound 0.6), from one docker-registry into a fresh one each run; both registries'
  CPU counts.

Per run: the tool's wall time and CPU seconds (its rusage), the registries' CPU seconds during it
(``/proc/PID/stat``), the machine's busy core-seconds and the time during which at most one core was busy
(``/proc/stat``, sampled every 50 ms: start-up, and a tail where only the registry commits). The floor is the
tool's and the registries' CPU over the cores; "floor / skopeo" is the least share of skopeo's time that tool
could reach on this machine with its own CPU as measured. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bytecode import compile_for_runs  # noqa: E402
from benchmarks.pull_push_vs_skopeo import _archive, _image, _regtool  # noqa: E402
from tests.support.distribution import run_distribution  # noqa: E402

_BOUNDS = {"push": 0.55, "archive": 0.8, "copy": 0.6}
_SAMPLE = 0.05


@dataclass(frozen=True)
class Measured:
    wall: float
    cpu: float  # the tool's own user + system CPU
    registries_cpu: float
    busy: float  # core-seconds the whole machine was busy
    one_core: float  # seconds during which at most one core was busy


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[int, int]:
    """Total and idle (idle + iowait) jiffies of all cores so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


@contextmanager
def _sampling(cores: int) -> Iterator[list[float]]:
    """Busy cores (0..cores) in every ``_SAMPLE`` seconds while the block runs."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        last = _machine()
        while not done.wait(_SAMPLE):
            now = _machine()
            total, idle = now[0] - last[0], now[1] - last[1]
            samples.append(cores * (total - idle) / total if total else 0.0)
            last = now

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def _measure(argv: Sequence[str], registry_pids: Sequence[int], cores: int) -> Measured:
    os.sync()
    before = sum(_process_cpu(pid) for pid in registry_pids)
    with _sampling(cores) as samples:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {errors[-2000:]}")
    after = sum(_process_cpu(pid) for pid in registry_pids)
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        registries_cpu=after - before,
        busy=sum(samples) * _SAMPLE,
        one_core=sum(_SAMPLE for busy in samples if busy <= 1.2),
    )


def _warm(path: Path) -> None:
    """Read every file under ``path`` once, so no run waits for the disk (the first one would)."""
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with file.open("rb") as stream:
            while stream.read(1 << 20):
                pass


def _argv(kind: str, tool: str, source: str, target: str) -> list[str]:
    if tool == "regtool":
        return [*_regtool(), "copy" if kind == "copy" else "push", "--quiet", source, target]
    skopeo_source = {"push": f"oci:{source}", "archive": f"docker-archive:{source}", "copy": f"docker://{source}"}
    return [
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        skopeo_source[kind],
        f"docker://{target}",
    ]


def _runs(kind: str, runs: int, work: Path, cores: int) -> dict[str, list[Measured]]:
    layout = _image(work, 2, 256) if kind == "archive" else _image(work, 16, 32)
    results: dict[str, list[Measured]] = {"regtool": [], "skopeo": []}
    with ExitStack() as stack:
        source_pids: list[int] = []
        if kind == "archive":
            source = str(_archive(work, layout, "2x256"))
        elif kind == "push":
            source = f"{layout}:bench"
        else:
            shutil.rmtree(work / "copy-source", ignore_errors=True)
            origin = stack.enter_context(run_distribution(work / "copy-source"))
            source = f"{origin.host}/bench/copy:1"
            subprocess.run(
                ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{source}"],
                check=True,
                capture_output=True,
            )
            source_pids.append(origin.process.pid)
        _warm(work / "copy-source" if kind == "copy" else Path(source.removesuffix(":bench")))
        for run in range(runs):
            for tool in ("regtool", "skopeo") if run % 2 == 0 else ("skopeo", "regtool"):
                root = work / f"target-{kind}-{tool}-{run}"
                shutil.rmtree(root, ignore_errors=True)
                with run_distribution(root) as target:
                    argv = _argv(kind, tool, source, f"{target.host}/bench/{kind}:1")
                    results[tool].append(_measure(argv, [*source_pids, target.process.pid], cores))
                shutil.rmtree(root, ignore_errors=True)
            print(
                f"{kind} run {run + 1}: " + "  ".join(f"{tool} {results[tool][-1].wall:.2f} s" for tool in results),
                flush=True,
            )
    return results


def _report(kind: str, results: dict[str, list[Measured]], cores: int) -> None:
    skopeo_wall = statistics.median(m.wall for m in results["skopeo"])
    print()
    print(f"{kind} (bound: regtool <= {_BOUNDS[kind]} of skopeo's time, {_BOUNDS[kind] * skopeo_wall:.2f} s here)")
    print()
    print("| tool | wall | its CPU s | registries' CPU s | floor (all CPU / cores) | floor / skopeo | <= 1 core busy |")
    print("|---|---|---|---|---|---|---|")
    for tool, measured in results.items():
        wall, cpu, registries, one_core = (
            statistics.median(getattr(m, name) for m in measured)
            for name in ("wall", "cpu", "registries_cpu", "one_core")
        )
        floor = (cpu + registries) / cores
        print(
            f"| {tool} | {wall:.2f} s ({wall / skopeo_wall:.2f}) | {cpu:.2f} | {registries:.2f} | {floor:.2f} s "
            f"| **{floor / skopeo_wall:.2f}** | {one_core:.2f} s |"
        )
    for tool, measured in results.items():
        print(f"samples {tool}: " + " ".join(f"{m.wall:.2f}" for m in measured))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kinds", default="push,archive,copy")
    parser.add_argument("--work", type=Path, default=Path("/tmp/regtool-cpu-floor"))
    args = parser.parse_args()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    unknown = sorted(set(kinds) - set(_BOUNDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}: choose from {sorted(_BOUNDS)}")
    compile_for_runs()
    args.work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    loads = [os.getloadavg()[0]]
    results = {kind: _runs(kind, args.runs, args.work, cores) for kind in kinds}
    loads.append(os.getloadavg()[0])
    print(f"\n{cores} cores, load (1 min) {min(loads):.2f}-{max(loads):.2f}, {args.runs} interleaved runs per kind")
    for kind, measured in results.items():
        _report(kind, measured, cores)


if __name__ == "__main__":
    main()
