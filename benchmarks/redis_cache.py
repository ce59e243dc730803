"""Benchmark: what the Redis descriptor cache saves, per blob HEAD and per pull, on the instance that did not
take the push (the cluster case: another instance stored the image, Redis knows it).

Not a test. For each mode (no cache, then ``redis_addr`` set), one fresh store (a filesystem root, or a new
SeaweedFS bucket with ``--storage s3``) and two in-process serve instances over it (A and B, the same Redis):
``regtool push`` through A, then against B:

- ``--heads`` blob HEADs over one kept-alive connection, cycling over the image's blobs (a child process, so
  client and server do not share an interpreter lock): time per HEAD;
- ``--rounds`` pulls (``regtool pull`` into a fresh layout each): median time per pull;

and, for both, the calls B's registry made to its storage driver (``tests/support/counting.py``; on s3 each is
one or more requests to the object store). Only 127.0.0.1 is contacted; the work directory is removed at the
end unless ``--keep``.

Run from the repository root::

    python benchmarks/redis_cache.py [--storage filesystem|s3] [--layers 16] [--layer-mib 4] [--heads 2000]
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from regtool.manifest import Manifest  # noqa: E402
from regtool.server.embedded import EmbeddedServe, embedded_serve  # noqa: E402
from tests.support.counting import count_store_calls  # noqa: E402
from tests.support.images import write_random_image  # noqa: E402
from tests.support.redis import run_redis  # noqa: E402

MIB = 1024 * 1024

_HEAD_CHILD = """
import http.client, sys, time
port, count, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
conn = http.client.HTTPConnection("127.0.0.1", port)
started = time.perf_counter()
for n in range(count):
    conn.request("HEAD", paths[n % len(paths)])
    response = conn.getresponse()
    response.read()
    assert response.status in (200, 307), response.status  # 307: s3 storage redirects to the store
print(time.perf_counter() - started)
"""


def _regtool(work: Path, *args: str) -> None:
    env = {**os.environ, "REGTOOL_STATE_DIR": str(work / "state")}
    subprocess.run(
        [sys.executable, "-m", "regtool", *args, "-q"],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def _store(kind: str, work: Path, name: str) -> Iterator[dict[str, Any]]:
    """ServerConfig overrides for a fresh, empty store of ``kind``."""
    if kind == "filesystem":
        yield {"root": work / name}
        return
    from tests.support.seaweedfs import run_seaweedfs

    with run_seaweedfs(work / f"weed-{name}") as weed:
        yield {"root": None, "storage": "s3", "s3": weed.new_bucket()}


def measure(
    kind: str, work: Path, source: Path, manifest: Manifest, redis_addr: str | None, args: Any
) -> dict[str, float]:
    label = "cached" if redis_addr else "uncached"
    with _store(kind, work, label) as store:
        root = store.pop("root")
        # "error": the client's HTTPS probe of a plain-HTTP port would log a warning per pull.
        common = {"redis_addr": redis_addr, "access_log": False, "log_level": "error", **store}
        with embedded_serve(root, **common) as a, embedded_serve(root, **common) as b:
            _regtool(work, "push", str(source), f"{a.host}/bench/cache:1")
            counter = count_store_calls(b.app.state.context.registry)
            blobs = [manifest.config.digest, *(layer.digest for layer in manifest.layers)]
            paths = [f"/v2/bench/cache/blobs/{digest}" for digest in blobs]
            head = subprocess.run(
                [sys.executable, "-c", _HEAD_CHILD, str(b.port), str(args.heads), *paths],
                check=True,
                capture_output=True,
                text=True,
            )
            head_seconds = float(head.stdout)
            head_calls = counter.total() / args.heads
            counter.reset()
            pulls = []
            for n in range(args.rounds):
                dest = work / f"pulled-{label}-{n}"
                started = time.perf_counter()
                _regtool(work, "pull", f"{b.host}/bench/cache:1", str(dest))
                pulls.append(time.perf_counter() - started)
                shutil.rmtree(dest)
            pull_calls = counter.total() / args.rounds
            stats = _cache_stats(b)
    return {
        "head_ms": head_seconds / args.heads * 1000,
        "head_store_calls": head_calls,
        "pull_s": statistics.median(pulls),
        "pull_store_calls": pull_calls,
        **stats,
    }


def _cache_stats(server: EmbeddedServe) -> dict[str, float]:
    cache = server.app.state.context.registry.cache
    if cache is None:
        return {}
    return {"hits": cache.stats.hits, "misses": cache.stats.misses, "errors": cache.stats.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", choices=["filesystem", "s3"], default="filesystem")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--layer-mib", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regtool-cache-", dir=args.workdir))
    try:
        source = work / "source"
        manifest = write_random_image(source, "1", count=args.layers, size=args.layer_mib * MIB)
        with run_redis() as redis:
            results = {
                "uncached": measure(args.storage, work, source, manifest, None, args),
                "cached": measure(args.storage, work, source, manifest, redis.addr, args),
            }
        print(f"storage {args.storage}: {args.layers} x {args.layer_mib} MiB, {args.heads} HEADs, {args.rounds} pulls")
        print(f"{'':10} {'HEAD ms':>9} {'store calls/HEAD':>17} {'pull s':>8} {'store calls/pull':>17}  cache")
        for label, r in results.items():
            cache = f"hits {r['hits']:.0f} misses {r['misses']:.0f} errors {r['errors']:.0f}" if "hits" in r else "-"
            print(
                f"{label:10} {r['head_ms']:9.3f} {r['head_store_calls']:17.2f} {r['pull_s']:8.3f}"
                f" {r['pull_store_calls']:17.1f}  {cache}"
            )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
