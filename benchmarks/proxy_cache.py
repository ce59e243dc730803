"""Benchmark: ``regtool serve --proxy-remote`` as a pull-through cache, against distribution 2.8.2 in proxy mode.

Not a test. Builds an OCI layout of 16 x 32 MiB incompressible gzip layers (``serve_vs_distribution.make_layout``),
pushes it with regtool to an upstream Debian ``docker-registry`` (distribution 2.8.2, access log on, so every
request it serves is counted from its log), then per round, with fresh caches (new roots and ports) each time,
times ``regtool pull`` (the CLI, a fresh process per pull, into a fresh directory) of:

- direct:      the upstream itself;
- serve cold:  a new ``regtool serve --proxy-remote <upstream>``, nothing cached;
- serve warm:  the same cache again (every blob cached; the tag revalidated upstream with one HEAD);
- plain:       a plain ``regtool serve`` holding the image (what a warm cache should cost);
- dist cold / dist warm: a new docker-registry with ``proxy: {remoteurl: <upstream>}``, then again.

Then once: 8 concurrent cold pulls (8 CLI processes at once) through a new regtool cache, counting the upstream's
GETs of each blob in its access log (the cache's promise: exactly one per blob).

``--baseline DIR`` adds, in every round, a cold pull through a new cache run from another regtool source tree
(``DIR`` holds its ``regtool`` package: ``git archive <commit> regtool | tar -x -C DIR``), in alternating order
with the current code's cold pull: before/after figures from the same minutes of a shared machine. The client is
the current code's in every pull.

Run from the repository root::

    python benchmarks/proxy_cache.py [--rounds 3] [--workdir /tmp/regtool-proxy-bench] [--keep] [--baseline DIR]

Only 127.0.0.1 is contacted. Prints medians of the wall time and of the CPU seconds each pull cost (the client's,
from its rusage, and the serving registries', from /proc: on a shared 2-CPU machine CPU is the steadier
figure), the ratios the issue sets bounds on, and the upstream GET counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.serve_vs_distribution import make_layout, peak_rss_kib  # noqa: E402
from benchmarks.server_cpu import cpu_seconds  # noqa: E402
from tests.support.distribution import Distribution, run_distribution  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

MiB = 1024 * 1024
IMAGE = "bench/app:1"
_BLOB_GET = re.compile(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/1\.1" 200')


def regtool(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "regtool", *args], check=True, capture_output=True, timeout=900, cwd=REPO)


@dataclass(frozen=True)
class Sample:
    """One pull: wall seconds, the client's CPU seconds, each serving registry's CPU seconds (the cache first)."""

    wall: float
    client_cpu: float
    server_cpus: tuple[float, ...]

    @property
    def server_cpu(self) -> float:
        return sum(self.server_cpus)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_pull(host: str, dest: Path, *servers: int) -> Sample:
    """``regtool pull host/IMAGE dest`` (dirty pages flushed first, dest removed after), with the CPU it cost the
    client and the registry processes ``servers`` (pids: the cache and its upstream for a pull through a cache)."""
    os.sync()
    before = [cpu_seconds(pid) for pid in servers]
    client_before = _children_cpu()
    start = time.perf_counter()
    regtool("pull", "--quiet", f"{host}/{IMAGE}", str(dest))
    wall = time.perf_counter() - start
    client = _children_cpu() - client_before
    server = tuple(cpu_seconds(pid) - cpu for pid, cpu in zip(servers, before, strict=True))
    shutil.rmtree(dest, ignore_errors=True)
    return Sample(wall, client, server)


def upstream_blob_gets(registry: Distribution, since: int) -> Counter[str]:
    """The upstream's 200 blob GETs per digest in its access log after byte offset ``since``."""
    with open(registry.log_path, "rb") as log:
        log.seek(since)
        text = log.read().decode("utf-8", "replace")
    return Counter(_BLOB_GET.findall(text))


def log_size(registry: Distribution) -> int:
    return registry.log_path.stat().st_size


@contextlib.contextmanager
def distribution_cache(work: Path, upstream: Distribution) -> Iterator[Distribution]:
    extra = f"proxy:\n  remoteurl: {upstream.url}\n"
    with run_distribution(work, extra_config=extra) as registry:
        yield registry


def layer_digests(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest).read_text())
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def baseline_cold(tree: Path, root: Path, upstream: Distribution, pulls: Path) -> Sample:
    """A cold pull through a new cache run from the source tree ``tree`` (its ``regtool`` package)."""
    # PYTHONSAFEPATH: ``python -m`` would otherwise put the current directory (this repository) first on sys.path.
    env = {"PYTHONPATH": str(tree.resolve()), "PYTHONSAFEPATH": "1"}
    with run_serve_process(root, "--quiet", "--proxy-remote", upstream.url, env=env) as cache:
        sample = timed_pull(cache.host, pulls / "baseline", cache.process.pid, upstream.process.pid)
    shutil.rmtree(root, ignore_errors=True)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=8, help="warm-cache and plain-serve pulls, alternating")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated layout in --workdir for the next run")
    parser.add_argument("--baseline", type=Path, default=None, help="also cold pulls through a cache run from DIR")
    options = parser.parse_args()
    work = options.workdir or Path(tempfile.mkdtemp(prefix="regtool-proxy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    layout = work / "layout"
    make_layout(layout, 16, 32 * MiB)
    blobs = layer_digests(layout)
    kinds = ("direct", "cold", "warm", "plain", "dist cold", "dist warm", *(("baseline",) if options.baseline else ()))
    times: dict[str, list[Sample]] = {k: [] for k in kinds}
    loads: list[float] = []
    try:
        with (
            run_distribution(work / "upstream", quiet=False) as upstream,
            run_serve_process(work / "plain", "--quiet") as plain,
        ):
            regtool("push", f"{layout}:bench", f"{upstream.host}/{IMAGE}")
            regtool("push", f"{layout}:bench", f"{plain.host}/{IMAGE}")
            for round_no in range(options.rounds):
                pulls = work / f"pulls{round_no}"
                loads.append(os.getloadavg()[0])
                up = upstream.process.pid
                times["direct"].append(timed_pull(upstream.host, pulls / "direct", up))
                times["plain"].append(timed_pull(plain.host, pulls / "plain", plain.process.pid))
                if options.baseline is not None and round_no % 2 == 0:
                    times["baseline"].append(baseline_cold(options.baseline, work / f"base{round_no}", upstream, pulls))
                with run_serve_process(work / f"cache{round_no}", "--quiet", "--proxy-remote", upstream.url) as cache:
                    times["cold"].append(timed_pull(cache.host, pulls / "cold", cache.process.pid, up))
                    times["warm"].append(timed_pull(cache.host, pulls / "warm", cache.process.pid, up))
                if options.baseline is not None and round_no % 2 == 1:
                    times["baseline"].append(baseline_cold(options.baseline, work / f"base{round_no}", upstream, pulls))
                with distribution_cache(work / f"dist{round_no}", upstream) as dist:
                    times["dist cold"].append(timed_pull(dist.host, pulls / "dist-cold", dist.process.pid, up))
                    times["dist warm"].append(timed_pull(dist.host, pulls / "dist-warm", dist.process.pid, up))
                shutil.rmtree(work / f"cache{round_no}", ignore_errors=True)
                shutil.rmtree(work / f"dist{round_no}", ignore_errors=True)
                print(
                    f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1].wall:.2f}s" for k, v in times.items()),
                    flush=True,
                )
            pairs: list[tuple[Sample, Sample]] = []
            with run_serve_process(work / "cache-pairs", "--quiet", "--proxy-remote", upstream.url) as cache:
                timed_pull(cache.host, work / "pairs-first")
                for _ in range(options.pairs):
                    warm = timed_pull(cache.host, work / "pairs-warm", cache.process.pid, upstream.process.pid)
                    pairs.append((warm, timed_pull(plain.host, work / "pairs-plain", plain.process.pid)))
            concurrent = options.concurrent
            with run_serve_process(work / "cache-concurrent", "--quiet", "--proxy-remote", upstream.url) as cache:
                since = log_size(upstream)
                os.sync()
                start = time.perf_counter()
                processes = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "regtool",
                            "pull",
                            "--quiet",
                            f"{cache.host}/{IMAGE}",
                            str(work / f"concurrent{i}"),
                        ],
                        cwd=REPO,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                    for i in range(concurrent)
                ]
                failures = [p.communicate(timeout=900)[1] for p in processes if p.wait(timeout=900) != 0]
                concurrent_wall = time.perf_counter() - start
                time.sleep(0.5)  # the access log is written as each request ends
                gets = upstream_blob_gets(upstream, since)
                cache_rss = peak_rss_kib(cache.process.pid)
    finally:
        for child in work.iterdir():
            if not (options.keep and child.name == "layout"):
                shutil.rmtree(child, ignore_errors=True)
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)

    median = {k: statistics.median(t.wall for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t.client_cpu + t.server_cpu for t in v) for k, v in times.items()}
    print(f"\n16 x 32 MiB, {options.rounds} rounds, 1-min load {min(loads):.1f}-{max(loads):.1f} before the rounds")
    print("median of `regtool pull`: wall s | client CPU-s | registries' CPU-s (cache + upstream) | all CPU-s")
    for key, samples in times.items():
        client = statistics.median(t.client_cpu for t in samples)
        server = statistics.median(t.server_cpu for t in samples)
        walls = ", ".join(f"{t.wall:.2f}" for t in samples)
        print(f"  {key:10} {median[key]:6.2f} | {client:5.2f} | {server:5.2f} | {cpu[key]:5.2f}   (walls: {walls})")
    for key in ("cold", "warm", *(("baseline",) if options.baseline else ())):
        cache_cpu = statistics.median(t.server_cpus[0] for t in times[key])
        print(f"  the cache's own CPU-s, {key}: {cache_cpu:.2f} (per pull: "
              + ", ".join(f"{t.server_cpus[0]:.2f}" for t in times[key]) + ")")  # fmt: skip
    comparisons = [("cold", "direct", 1.2), ("warm", "plain", 1.05), ("cold", "dist cold", 1.0),
                   ("warm", "dist warm", 1.0)]  # fmt: skip
    if options.baseline is not None:
        comparisons += [("baseline", "direct", 1.2), ("cold", "baseline", 1.0)]
    for a, b, bound in comparisons:
        paired = statistics.median(x.wall / y.wall for x, y in zip(times[a], times[b], strict=True))
        print(
            f"  {a} / {b:10} wall {median[a] / median[b]:.3f} (per round: {paired:.3f}), CPU {cpu[a] / cpu[b]:.3f}"
            f"  (bound: <= {bound})"
        )
    warm_walls = [w.wall for w, _ in pairs]
    plain_walls = [p.wall for _, p in pairs]
    print(
        f"\n{len(pairs)} warm-cache / plain-serve pulls, alternating: median {statistics.median(warm_walls):.2f}s / "
        f"{statistics.median(plain_walls):.2f}s, median of the pairs' ratios "
        f"{statistics.median(w / p for w, p in zip(warm_walls, plain_walls, strict=True)):.3f}"
    )
    print(
        f"\n{concurrent} concurrent cold pulls through one new cache: {concurrent_wall:.2f}s wall, "
        f"failures: {len(failures)}, the cache's peak RSS {cache_rss / 1024:.0f} MiB"
    )
    per_blob = [gets.get(digest, 0) for digest in blobs]
    print(f"  upstream GETs per blob ({len(blobs)} blobs): {dict(Counter(per_blob))} (count -> blobs)")
    print(f"  upstream blob GETs in all: {sum(gets.values())}")
    for failure in failures:
        print("  failure:", failure.decode(errors="replace").strip()[-300:])


if __name__ == "__main__":
    main()
