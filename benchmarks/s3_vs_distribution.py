"""Benchmark: skopeo pushing to and pulling from ``regtool serve --storage s3`` vs docker-registry's own s3 driver,
both on the same SeaweedFS; and what re-reading an upload costs when its commit lands on another instance.

Not a test. One SeaweedFS (tests/support/seaweedfs.py) for the whole run; each round starts a fresh regtool serve
and a fresh docker-registry 2.8.2 (new ports, so skopeo's blob-info cache cannot turn pushes into mounts; new
buckets), both redirecting blob GETs to presigned URLs on the store, and times, interleaved:

    skopeo --insecure-policy copy --dest-tls-verify=false oci:<layout>:bench docker://127.0.0.1:<port>/bench/<image>:r<N>
    skopeo --insecure-policy copy --src-tls-verify=false docker://127.0.0.1:<port>/bench/<image>:r<N> oci:<out>:bench

docker-registry is started without AWS_CA_BUNDLE in its environment (it panics at start with it). Prints medians,
the serve / distribution ratio, serve's peak RSS (VmHWM) and the load average seen before the timed runs.

``--rehash MIB``: one blob of MIB MiB is uploaded in 4 PATCH chunks to one serve instance and closed (PUT) on the
same instance (the running hash is in its memory) or on a second instance sharing the bucket (it re-reads the
upload from the store); prints the two PUT times.

Run from the repository root::

    python benchmarks/s3_vs_distribution.py [--rounds 3] [--pulls 1] [--small-only | --large-only] [--large-mib 512]
    python benchmarks/s3_vs_distribution.py --rehash 256
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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

from benchmarks.serve_vs_distribution import Times, make_layout, report, timed_round  # noqa: E402
from tests.support.distribution import free_port, http_status, stop_process  # noqa: E402
from tests.support.redis import run_redis  # noqa: E402
from tests.support.seaweedfs import SeaweedFS, run_seaweedfs  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

MiB = 1024 * 1024

_DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    regionendpoint: {endpoint}
    bucket: {bucket}
    region: us-east-1
    accesskey: {access_key}
    secretkey: {secret_key}
    secure: false
    v4auth: true
    rootdirectory: /registry
  delete:
    enabled: true
{cache}  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: regtool-bench
{redis}"""


@contextlib.contextmanager
def run_distribution_s3(root: Path, store: SeaweedFS, redis: str | None = None) -> Iterator[str]:
    """docker-registry with its s3 driver on a new bucket of ``store`` (and its blob-descriptor cache in the Redis
    at ``redis``, when given); yields host:port."""
    root.mkdir(parents=True, exist_ok=True)
    with store.bucket() as settings:
        yield from _distribution_on(root, store, settings.bucket, redis)


def _distribution_on(
    root: Path, store: SeaweedFS, bucket: str, redis: str | None = None, endpoint: str | None = None
) -> Iterator[str]:
    """docker-registry on ``bucket``, reaching the store at ``endpoint`` (default: the store's own)."""
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        _DISTRIBUTION_CONFIG.format(
            endpoint=endpoint or store.endpoint,
            bucket=bucket,
            access_key=store.access_key,
            secret_key=store.secret_key,
            port=port,
            cache="  cache:\n    blobdescriptor: redis\n" if redis else "",
            redis=f"redis:\n  addr: {redis}\n  db: 1\n" if redis else "",
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    with open(root / "registry.log", "ab") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 20
        while http_status(port) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start; see {root / 'registry.log'}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)


def _serve_args(store: SeaweedFS, bucket: str, endpoint: str | None = None) -> list[str]:
    endpoint = endpoint or store.endpoint
    return ["--storage", "s3", "--s3-endpoint", endpoint, "--s3-bucket", bucket, "--s3-path-style", "--quiet"]


@contextlib.contextmanager
def registries(
    work: Path, store: SeaweedFS, round_no: int, redis: str | None = None
) -> Iterator[dict[str, tuple[str, int | None]]]:
    """A fresh serve and docker-registry on new buckets, each with its blob-descriptor cache in the Redis at
    ``redis`` when given (serve in database 0, distribution in 1): name -> (host:port, pid of serve or None)."""
    cache = ["--redis", redis] if redis else []
    with (
        store.bucket() as settings,
        run_serve_process(
            work / f"serve-{round_no}", *_serve_args(store, settings.bucket), *cache, env=store.env()
        ) as serve,
        run_distribution_s3(work / f"distribution-{round_no}", store, redis) as dist,
    ):
        yield {"serve": (serve.host, serve.process.pid), "distribution": (dist, None)}


def rehash(work: Path, store: SeaweedFS, mib: int) -> None:
    """PUT time of a chunked upload closed on the instance that received it vs on another one (re-read)."""
    import httpx

    chunk = os.urandom(mib * MiB // 4)
    digest = "sha256:" + hashlib.sha256(chunk * 4).hexdigest()
    results: dict[str, list[float]] = {"same instance": [], "other instance": []}
    with (
        store.bucket() as settings,
        run_serve_process(work / "a", *_serve_args(store, settings.bucket), env=store.env()) as one,
        run_serve_process(work / "b", *_serve_args(store, settings.bucket), env=store.env()) as two,
        httpx.Client(timeout=900) as client,
    ):
        for attempt in range(3):
            for label, closer in (("same instance", one), ("other instance", two)):
                repo = f"{one.url}/v2/rehash{attempt}{label[0]}"
                location = client.post(f"{repo}/blobs/uploads/").headers["location"]
                for i in range(4):
                    headers = {"Content-Range": f"{i * len(chunk)}-{(i + 1) * len(chunk) - 1}"}
                    assert client.patch(f"{one.url}{location}", content=chunk, headers=headers).status_code == 202
                started = time.monotonic()
                closed = client.put(f"{closer.url}{location}", params={"digest": digest})
                results[label].append(time.monotonic() - started)
                assert closed.status_code == 201, closed.text
    for label, times in results.items():
        samples = ", ".join(f"{t:.2f}" for t in times)
        print(f"{mib} MiB upload, PUT on the {label}: median {statistics.median(times):.2f} s [{samples}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--small-only", action="store_true", help="only the 16 x 32 MiB image")
    parser.add_argument("--large-only", action="store_true", help="only the 2-layer image")
    parser.add_argument("--pulls", type=int, default=1, help="pulls per image and round, alternating (default 1)")
    parser.add_argument("--large-mib", type=int, default=512, help="layer size of the 2-layer image (default 512)")
    parser.add_argument("--rehash", type=int, default=0, metavar="MIB", help="instead: the re-read cost at commit")
    parser.add_argument("--redis", action="store_true", help="both registries cache blob descriptors in one Redis")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="regtool-s3-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    images = {"16x32MiB": (16, 32 * MiB), f"2x{args.large_mib}MiB": (2, args.large_mib * MiB)}
    if args.small_only or args.large_only:
        images = {k: v for k, v in images.items() if (k == "16x32MiB") == args.small_only}
    times: Times = {}
    peak = 0
    try:
        with run_seaweedfs(work / "seaweedfs") as store, contextlib.ExitStack() as stack:
            redis_server = stack.enter_context(run_redis()) if args.redis else None
            redis = redis_server.addr if redis_server is not None else None
            if args.rehash:
                rehash(work, store, args.rehash)
                return
            for name, (count, size) in images.items():
                print(f"generating {name} ...", flush=True)
                make_layout(work / name, count, size)
            for round_no in range(args.rounds):
                if redis_server is not None:
                    # Each round's registries are on new buckets: descriptors cached for the last ones would lie.
                    redis_server.command("FLUSHALL")
                with registries(work, store, round_no, redis) as servers:
                    peak = max(peak, timed_round(work, images, servers, round_no, args.pulls, times))
                    print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(images, times, peak)


if __name__ == "__main__":
    main()
