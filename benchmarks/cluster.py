"""Benchmark: one ``regtool serve`` against two behind haproxy (round robin, one storage root, one Redis).

Not a test. Three set-ups, each fresh for every round (new root, new processes, a Redis of its own):

- ``direct``: one instance, clients connect to it;
- ``haproxy-1``: the same instance behind haproxy (what the balancer itself costs);
- ``haproxy-2``: two instances behind haproxy.

In each round: ``regtool push`` of an image (``--layers`` x ``--layer-mib``, incompressible) into the empty
store, then ``regtool pull`` of it (medians over ``--rounds``); in the last round also ``--clients`` pulls at
once (wall time of the slowest). "CPU s" is what the serving side (the instances and haproxy, user + system from
/proc) spent on one push or pull, which the machine's load does not inflate as it does wall time. Clients are
subprocesses; every process, haproxy and Redis share this machine's cores, so the two-instance figures say what
spreading one server's Python over processes buys when the clients compete for the same CPUs. The 1-minute load
average is printed. Only 127.0.0.1 is contacted; the work directory is removed unless ``--keep``.

Run from the repository root::

    python benchmarks/cluster.py [--layers 16] [--layer-mib 32] [--rounds 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.server_cpu import cpu_seconds  # noqa: E402
from tests.support.haproxy import run_haproxy  # noqa: E402
from tests.support.images import write_random_image  # noqa: E402
from tests.support.redis import run_redis  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

MIB = 1024 * 1024


def _regtool(work: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REGTOOL_STATE_DIR": str(work / "state")}
    return subprocess.Popen(
        [sys.executable, "-m", "regtool", *args, "-q"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def _timed(*processes: subprocess.Popen[bytes]) -> float:
    started = time.perf_counter()
    for process in processes:
        if process.wait() != 0:
            raise RuntimeError(f"{process.args} failed")
    return time.perf_counter() - started


@contextlib.contextmanager
def _setup(kind: str, work: Path, round_number: int) -> Iterator[tuple[str, list[int]]]:
    """The registry host clients use for ``kind`` (new processes over a new, empty root) and the process ids of
    the serving side (the instances and haproxy)."""
    root = work / f"root-{kind}-{round_number}"
    count = 2 if kind == "haproxy-2" else 1
    with contextlib.ExitStack() as stack:
        # A Redis of its own: a cache shared by two stores would describe blobs one of them lacks.
        redis_addr = stack.enter_context(run_redis()).addr
        instances = [
            stack.enter_context(
                run_serve_process(
                    root, "--quiet", "--no-web", "--redis", redis_addr, log_path=work / f"{kind}-{round_number}-{n}.log"
                )
            )
            for n in range(count)
        ]
        pids = [i.process.pid for i in instances]
        if kind == "direct":
            yield instances[0].host, pids
            return
        backends = [("127.0.0.1", i.port) for i in instances]
        balancer = stack.enter_context(run_haproxy(work / f"lb-{kind}-{round_number}", backends))
        yield balancer.host, [*pids, balancer.process.pid]


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def measure(kind: str, work: Path, source: Path, args: argparse.Namespace) -> dict[str, float]:
    pushes, pulls, push_cpu, pull_cpu = [], [], [], []
    together = 0.0
    for n in range(args.rounds):
        # A fresh set-up per round: a second push into the same store would find its blobs there already.
        with _setup(kind, work, n) as (host, pids):
            before = _cpu(pids)
            pushes.append(_timed(_regtool(work, "push", str(source), f"{host}/bench/{kind}:1")))
            middle = _cpu(pids)
            dest = work / f"pulled-{kind}"
            pulls.append(_timed(_regtool(work, "pull", f"{host}/bench/{kind}:1", str(dest))))
            push_cpu.append(middle - before)
            pull_cpu.append(_cpu(pids) - middle)
            shutil.rmtree(dest)
            if n == args.rounds - 1:
                dests = [work / f"many-{kind}-{c}" for c in range(args.clients)]
                together = _timed(*[_regtool(work, "pull", f"{host}/bench/{kind}:1", str(d)) for d in dests])
                for dest in dests:
                    shutil.rmtree(dest)
    return {
        "push": statistics.median(pushes),
        "pull": statistics.median(pulls),
        "together": together,
        "push_cpu": statistics.median(push_cpu),
        "pull_cpu": statistics.median(pull_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--layer-mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regtool-cluster-", dir=args.workdir))
    try:
        source = work / "source"
        write_random_image(source, "1", count=args.layers, size=args.layer_mib * MIB, gzip_layers=False)
        total = args.layers * args.layer_mib
        print(
            f"{args.layers} x {args.layer_mib} MiB ({total} MiB), {args.rounds} rounds, {args.clients} clients at once"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(
            f"{'':10} {'push s':>8} {'pull s':>8} {f'{args.clients} pulls s':>12} {'MiB/s together':>15}"
            f" {'push CPU s':>11} {'pull CPU s':>11}"
        )
        for kind in ("direct", "haproxy-1", "haproxy-2"):
            r = measure(kind, work, source, args)
            rate = total * args.clients / r["together"]
            print(
                f"{kind:10} {r['push']:8.2f} {r['pull']:8.2f} {r['together']:12.2f} {rate:15.0f}"
                f" {r['push_cpu']:11.2f} {r['pull_cpu']:11.2f}"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
