"""Benchmark: the requests ``regtool serve --storage s3`` and docker-registry's s3 driver send to the object store
for one skopeo pull, counted on the wire, without and with their Redis blob-descriptor caches.

Not a test (tests/server/test_s3_requests.py pins serve's counts). One SeaweedFS; for each registry an instance A
on a new bucket takes skopeo's push directly, then a second instance B on the same bucket (and the same Redis
database, so A's push filled B's cache, as behind a balancer) reaches the store through a counting proxy
(tests/support/faultproxy.py) and serves the pull. B's blob GETs answer 307 to URLs presigned for the proxy, so
skopeo's fetches of the bytes pass it too; they are told apart by their signature in the query
(``X-Amz-Signature``) and counted on their own line. Each registry request is named by its method and the key's
last component (``link``, ``data``), or by the S3 operation for requests on the bucket itself (a listing).

Then, on the instances that reach the store directly, the pull's registry requests are timed one by one
(``--rounds`` times, the registries alternating who goes first): the manifest GET and each blob GET, answered
307 and not followed; the median per request shows each registry's own part of a pull, without the bytes, and
the registry process's CPU time (user + system, /proc) over those requests, per pull.

Run from the repository root::

    python benchmarks/s3_pull_requests.py [--layers 16] [--layer-mib 1] [--redis] [--rounds 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.s3_vs_distribution import _distribution_on, _serve_args  # noqa: E402
from benchmarks.serve_vs_distribution import make_layout  # noqa: E402
from tests.support.faultproxy import Exchange, FaultProxy, run_fault_proxy  # noqa: E402
from tests.support.redis import run_redis  # noqa: E402
from tests.support.seaweedfs import SeaweedFS, run_seaweedfs  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

MiB = 1024 * 1024
run_distribution_on = contextlib.contextmanager(_distribution_on)


def request_kind(exchange: Exchange) -> str:
    """``METHOD last-component`` for a key; the operation's name for a request on the bucket itself."""
    parts = [p for p in exchange.path.split("/") if p]
    if len(parts) > 1:
        return f"{exchange.method} {parts[-1]}"
    query = exchange.query
    operation = "ListMultipartUploads" if "uploads" in query else "ListObjects" if exchange.method == "GET" else ""
    return f"{exchange.method} bucket {operation}".rstrip()


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True, timeout=900)


@dataclass(frozen=True)
class Instances:
    """One registry's two instances on one bucket: ``pusher`` reaches the store directly, ``puller`` through
    ``proxy`` (host:port each)."""

    pusher: str
    puller: str
    proxy: FaultProxy
    pusher_pid: int


def process_of(config: Path) -> int:
    """The pid of the docker-registry started with ``config`` (run_distribution_on yields its address only)."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and str(config).encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                return int(entry.name)
    raise RuntimeError(f"no process serves {config}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(stack: contextlib.ExitStack, work: Path, store: SeaweedFS, registry: str, redis: str | None) -> Instances:
    port = int(store.endpoint.rsplit(":", 1)[1])
    settings = stack.enter_context(store.bucket())
    proxy = stack.enter_context(run_fault_proxy(port))
    if registry == "serve":
        cache = ["--redis", redis] if redis else []
        direct = _serve_args(store, settings.bucket)
        counted = _serve_args(store, settings.bucket, endpoint=proxy.url)
        direct_serve = stack.enter_context(run_serve_process(work / "a", *direct, *cache, env=store.env()))
        puller = stack.enter_context(run_serve_process(work / "b", *counted, *cache, env=store.env())).host
        return Instances(direct_serve.host, puller, proxy, direct_serve.process.pid)
    for instance in ("a", "b"):
        (work / instance).mkdir(parents=True, exist_ok=True)
    pusher = stack.enter_context(run_distribution_on(work / "a", store, settings.bucket, redis))
    puller = stack.enter_context(run_distribution_on(work / "b", store, settings.bucket, redis, proxy.url))
    return Instances(pusher, puller, proxy, process_of(work / "a" / "config.yml"))


def count_pull(work: Path, instances: Instances) -> Counter[str]:
    """The store requests of one pull from ``instances.puller``: the registry's by kind, and the client's
    presigned fetches under ``presigned``."""
    instances.proxy.reset_counts()
    out = work / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{instances.puller}/bench/image:1", f"oci:{out}:bench")
    shutil.rmtree(out)
    found: Counter[str] = Counter()
    for exchange in instances.proxy.exchanges():
        found["presigned" if "X-Amz-Signature=" in exchange.query else request_kind(exchange)] += 1
    return found


def time_requests(layout: Path, registries: dict[str, Instances], rounds: int) -> None:
    """Per request, on the instances that reach the store directly, interleaved: the manifest GET and the blob
    GETs (answered 307, not followed) of a pull, ``rounds`` times; prints medians in ms and the ratio, and each
    registry's CPU time per pull's requests."""
    import httpx

    algorithm, _, encoded = json.loads((layout / "index.json").read_bytes())["manifests"][0]["digest"].partition(":")
    manifest = json.loads((layout / "blobs" / algorithm / encoded).read_bytes())
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    samples: dict[tuple[str, str], list[float]] = {}
    clients = {name: httpx.Client(base_url=f"http://{i.pusher}", timeout=30) for name, i in registries.items()}
    cpu = dict.fromkeys(registries, 0.0)
    try:
        for round_no in range(rounds):
            order = list(clients.items()) if round_no % 2 == 0 else list(reversed(clients.items()))
            for name, client in order:
                cpu[name] -= cpu_seconds(registries[name].pusher_pid)
                accept = {"Accept": manifest["mediaType"]}
                started = time.perf_counter()
                assert client.get("/v2/bench/image/manifests/1", headers=accept).status_code == 200
                samples.setdefault((name, "manifest GET"), []).append(time.perf_counter() - started)
                for digest in blobs:
                    started = time.perf_counter()
                    assert client.get(f"/v2/bench/image/blobs/{digest}").status_code == 307
                    samples.setdefault((name, "blob GET (307)"), []).append(time.perf_counter() - started)
                cpu[name] += cpu_seconds(registries[name].pusher_pid)
    finally:
        for client in clients.values():
            client.close()
    for request in ("manifest GET", "blob GET (307)"):
        ours, theirs = (statistics.median(samples[(name, request)]) * 1000 for name in ("serve", "distribution"))
        count = len(samples[("serve", request)])
        figures = f"serve {ours:6.2f} ms  distribution {theirs:6.2f} ms  ratio {ours / theirs:.2f}"
        print(f"{request:15} {figures}  ({count} each)")
    ours, theirs = (cpu[name] / rounds * 1000 for name in ("serve", "distribution"))
    print(f"CPU per pull's requests: serve {ours:.1f} ms, distribution {theirs:.1f} ms (process user + system)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--layer-mib", type=int, default=1, help="layer size (the counts do not depend on it)")
    parser.add_argument("--redis", action="store_true", help="both registries cache blob descriptors in one Redis")
    parser.add_argument("--rounds", type=int, default=50, help="rounds of timed requests (0: counts only)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regtool-s3-requests-"))
    try:
        with run_seaweedfs(work / "seaweedfs") as store, contextlib.ExitStack() as stack:
            redis_server = stack.enter_context(run_redis()) if args.redis else None
            redis = redis_server.addr if redis_server is not None else None
            layout = work / "image"
            make_layout(layout, args.layers, args.layer_mib * MiB)
            registries = {name: start(stack, work / name, store, name, redis) for name in ("serve", "distribution")}
            for instances in registries.values():
                push = f"docker://{instances.pusher}/bench/image:1"
                skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:bench", push)
            print(f"one pull of {args.layers} x {args.layer_mib} MiB + config, redis: {'yes' if args.redis else 'no'}")
            for name, instances in registries.items():
                found = count_pull(work / name, instances)
                presigned = found.pop("presigned", 0)
                details = ", ".join(f"{kind}: {n}" for kind, n in sorted(found.items()))
                print(f"{name:12} store requests {sum(found.values()):3}  ({details}); presigned fetches {presigned}")
            if args.rounds:
                print(f"load average (1 min) before the timed requests: {os.getloadavg()[0]:.2f}")
                time_requests(layout, registries, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
