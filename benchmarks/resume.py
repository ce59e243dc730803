"""Resume and multi-connection download, measured through the fault proxy (tests/support/faultproxy.py).

1. Bytes moved again after an interruption. A ``regtool pull`` (then a ``regtool push``) of one incompressible
   layer runs through a throttled proxy and is killed (SIGKILL) half-way; a second run completes it. The proxy
   counts body bytes per request, so we know what crossed the wire in each run, what the first run kept (the
   pull's partial in the staging area, the push's session at the registry), and how much the second run sent
   beyond the remainder (target: nothing).
2. One large blob over several Range connections (``rangefetch.SplitPolicy``) against one stream: straight from
   ``regtool serve`` on loopback, and through the proxy capping each connection's rate (what a CDN or a long
   path does to one TCP stream).

    python benchmarks/resume.py [--resume-mib 256] [--split-mib 1024] [--capped-mib 256] [--parts 4]
                                [--rate-mib 64] [--cap-mib 32] [--repeat 2]

Loopback only: ``regtool serve`` runs as a subprocess, the proxy in this process, every pull as a subprocess;
everything is written under one temporary directory and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from regtool.client.resume import UploadStateStore, parse_upload_range
from regtool.image.blobstore import STAGING_DIR
from regtool.manifest import Descriptor
from tests.support.faultproxy import FaultProxy, run_fault_proxy
from tests.support.images import write_random_image
from tests.support.serve import run_serve_process

MIB = 1024 * 1024
REPO = "bench/resume"

_PULL_CHILD = """
import sys, time, anyio
from pathlib import Path
from regtool.client import Client
from regtool.client.v2.rangefetch import SplitPolicy
from regtool.reference import Reference
ref, dest, parts = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
split = SplitPolicy(threshold=1 << 20, parts=parts, remote_only=False) if parts > 1 else None
async def main() -> None:
    async with Client(plain_http=True, split=split, jobs=8) as client:
        started = time.perf_counter()
        await client.pull(Reference.parse(ref), dest)
        print(time.perf_counter() - started)
anyio.run(main)
"""


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "REGTOOL_STATE_DIR": str(work / "state"), "NO_PROXY": "127.0.0.1"}


def _wait(condition: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the transfer did not get far enough")
        time.sleep(0.01)


def _regtool(work: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "regtool", *args, "-q"],
        cwd=work,
        env=_env(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"regtool failed: {err.decode(errors='replace')}")


def resume_pull(work: Path, proxy: FaultProxy, layer: Descriptor, rate: float) -> dict[str, int]:
    path = f"/blobs/{layer.digest}"
    dest = work / "pulled"
    shutil.rmtree(dest, ignore_errors=True)
    proxy.reset_counts()
    proxy.throttle(rate)
    proc = _regtool(work, "pull", f"{proxy.host}/{REPO}:1.0", str(dest))
    _wait(lambda: proxy.body_bytes("GET", path) >= layer.size // 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait(lambda: all(e.end is not None for e in proxy.exchanges()))
    first = proxy.body_bytes("GET", path)
    kept = (dest / STAGING_DIR / f"sha256-{layer.digest.encoded}.partial").stat().st_size
    proxy.throttle(None)
    proxy.reset_counts()
    _finish(_regtool(work, "pull", f"{proxy.host}/{REPO}:1.0", str(dest)))
    second = proxy.body_bytes("GET", path)
    return {"size": layer.size, "first": first, "kept": kept, "second": second}


def resume_push(
    work: Path, proxy: FaultProxy, layer: Descriptor, config: Descriptor, rate: float, registry_url: str
) -> dict[str, int]:
    uploads = r"/blobs/uploads/"
    with httpx.Client(base_url=registry_url) as http:
        http.delete(f"/v2/{REPO}-push/blobs/{layer.digest}")
    proxy.reset_counts()
    proxy.throttle(rate)
    target = f"{proxy.host}/{REPO}-push:1.0"
    proc = _regtool(work, "push", "src:1.0", target, "--jobs", "1")
    _wait(lambda: proxy.upload_bytes("PUT", uploads) >= layer.size // 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait(lambda: all(e.end is not None for e in proxy.exchanges()))
    first = proxy.upload_bytes(path=uploads)
    state = UploadStateStore(work / "state").load(proxy.host, f"{REPO}-push", str(layer.digest))
    held = 0
    if state is not None:
        with httpx.Client() as http:
            held = parse_upload_range(http.get(state.location).headers.get("Range")) or 0
    proxy.throttle(None)
    proxy.reset_counts()
    _finish(_regtool(work, "push", "src:1.0", target))
    # One blob at a time, largest first: the config was never reached by the first run.
    second = proxy.upload_bytes(path=uploads) - config.size
    return {"size": layer.size, "first": first, "kept": held, "second": second}


def pull_seconds(work: Path, host: str, parts: int) -> float:
    dest = work / f"split-{parts}"
    shutil.rmtree(dest, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, "-c", _PULL_CHILD, f"{host}/{REPO}-split:1.0", str(dest), str(parts)],
        cwd=work,
        env=_env(work),
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(dest, ignore_errors=True)
    return float(out.stdout.strip().splitlines()[-1])


def compare_split(work: Path, host: str, parts: int, repeat: int) -> tuple[float, float]:
    pull_seconds(work, host, 1)  # warm the page cache and the server
    one: list[float] = []
    split: list[float] = []
    for attempt in range(repeat):
        order = (1, parts) if attempt % 2 == 0 else (parts, 1)
        for n in order:
            (one if n == 1 else split).append(pull_seconds(work, host, n))
    return statistics.median(one), statistics.median(split)


def _push_layout(work: Path, layout: Path, target: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "regtool", "push", f"{layout}:1.0", target, "-q"],
        cwd=work,
        env=_env(work),
        stdout=subprocess.DEVNULL,
        check=True,
    )


def _row(name: str, r: dict[str, int]) -> str:
    remainder = r["size"] - r["kept"]
    return (
        f"| {name} | {r['size'] / MIB:.0f} MiB | {r['first'] / MIB:.1f} MiB | {r['kept'] / MIB:.1f} MiB | "
        f"{(r['first'] - r['kept']) / 1024:.0f} KiB | {r['second'] / MIB:.1f} MiB | {r['second'] - remainder} B |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume-mib", type=int, default=256)
    parser.add_argument("--split-mib", type=int, default=1024)
    parser.add_argument("--capped-mib", type=int, default=256)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--rate-mib", type=float, default=64, help="proxy rate while a run is to be killed")
    parser.add_argument("--cap-mib", type=float, default=32, help="per-connection cap of the capped comparison")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regtool-bench-resume-"))
    try:
        print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        manifest = write_random_image(work / "src", "1.0", count=1, size=args.resume_mib * MIB)
        write_random_image(work / "big", "1.0", count=1, size=args.split_mib * MIB)
        write_random_image(work / "capped", "1.0", count=1, size=args.capped_mib * MIB)
        with run_serve_process(work / "registry", "--quiet", "--no-v1") as server:
            _push_layout(work, work / "src", f"{server.host}/{REPO}:1.0")
            _push_layout(work, work / "big", f"{server.host}/{REPO}-split:1.0")
            with run_fault_proxy(server.port) as proxy:
                layer = manifest.layers[0]
                rate = args.rate_mib * MIB
                print(
                    "\n| run killed half-way | blob | first run moved | kept | lost in flight | "
                    "second run moved | beyond the remainder |"
                )
                print("|---|---|---|---|---|---|---|")
                print(_row("pull", resume_pull(work, proxy, layer, rate)))
                assert manifest.config is not None
                print(_row("push", resume_push(work, proxy, layer, manifest.config, rate, server.url)))

                one, split = compare_split(work, server.host, args.parts, args.repeat)
                print(f"\n{args.split_mib} MiB blob from regtool serve on loopback, median of {args.repeat}:")
                print(f"  one stream {one:.2f} s, {args.parts} ranges {split:.2f} s, ratio {one / split:.2f}x")

                # Through the proxy, each connection capped: one stream is limited to the cap.
                _push_layout(work, work / "capped", f"{server.host}/{REPO}-split:1.0")
                proxy.throttle(args.cap_mib * MIB)
                one, split = compare_split(work, proxy.host, args.parts, args.repeat)
                proxy.throttle(None)
                print(f"{args.capped_mib} MiB blob, each connection capped at {args.cap_mib:.0f} MiB/s:")
                print(f"  one stream {one:.2f} s, {args.parts} ranges {split:.2f} s, ratio {one / split:.2f}x")
        print(json.dumps({"work": str(work)}) if os.environ.get("KEEP") else "")
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
