"""Registry v1 (serial parent-chain walk) against v2 (concurrent, manifest-driven) pulls of the same image.

For each image shape (16 x 1 MiB and 16 x 32 MiB incompressible gzip layers) and each added per-request latency
(0, 20, 50 ms, standing in for a WAN), the image is pulled over v1 and over v2 from one ``regtool serve`` that
speaks both, ``--repeat`` times each, interleaved; the table shows the median wall times and v2's speed-up.

    python benchmarks/v1_vs_v2.py [--repeat 3] [--latencies 0,20,50] [--shapes 16x1,16x32] [--jobs 8]

Loopback only; everything is written under one temporary directory and removed at the end.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from regtool.cli.demo import embedded_serve, make_sample_image
from regtool.client import Client
from regtool.reference import Reference

MIB = 1024 * 1024


async def push_both(layout: Path, ref: Reference) -> None:
    async with Client(plain_http=True) as client:
        await client.push(str(layout), ref, protocol="v1")
        await client.push(str(layout), ref, protocol="v2")


async def pull_once(ref: Reference, dest: Path, protocol: str, jobs: int) -> float:
    # plain_http: both protocols skip the https attempt a loopback host otherwise gets first.
    async with Client(jobs=jobs, plain_http=True) as client:
        started = time.perf_counter()
        await client.pull(ref, dest, protocol=protocol)
        return time.perf_counter() - started


def measure(work: Path, layers: int, size_mib: int, latencies: list[float], repeat: int, jobs: int) -> list[str]:
    rows = []
    layout = work / f"image-{layers}x{size_mib}"
    make_sample_image(layout, layers=layers, layer_size=size_mib * MIB)
    root = work / f"registry-{layers}x{size_mib}"
    with embedded_serve(root, latency_ms=0) as server:
        ref = Reference.parse(f"{server.host}/bench/image:latest")
        anyio.run(push_both, layout, ref)
    for latency in latencies:
        times: dict[str, list[float]] = {"v1": [], "v2": []}
        with embedded_serve(root, latency_ms=latency) as server:
            ref = Reference.parse(f"{server.host}/bench/image:latest")
            for attempt in range(repeat):
                for protocol in ("v1", "v2") if attempt % 2 == 0 else ("v2", "v1"):
                    dest = work / f"pull-{protocol}"
                    times[protocol].append(anyio.run(pull_once, ref, dest, protocol, jobs))
                    shutil.rmtree(dest)
        v1 = statistics.median(times["v1"])
        v2 = statistics.median(times["v2"])
        rows.append(f"| {layers} x {size_mib} MiB | {latency:g} ms | {v1:.2f} s | {v2:.2f} s | {v1 / v2:.1f}x |")
        print(rows[-1], flush=True)
    shutil.rmtree(layout)
    shutil.rmtree(root)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latencies", default="0,20,50")
    parser.add_argument("--shapes", default="16x1,16x32", help="LAYERSxMIB, comma-separated")
    parser.add_argument("--jobs", type=int, default=8, help="concurrent v2 downloads")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latencies.split(",")]
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
    print(f"# {platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"# median of {args.repeat} interleaved pulls each; v2 with {args.jobs} concurrent downloads")
    print("| image | latency | v1 (serial) | v2 (concurrent) | v2/v1 speed-up |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="regtool-bench-v1v2-") as work:
        for layers, size_mib in shapes:
            measure(Path(work), layers, size_mib, latencies, args.repeat, args.jobs)


if __name__ == "__main__":
    main()
