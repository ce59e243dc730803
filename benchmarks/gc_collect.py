"""Benchmark: ``regtool serve gc`` on a store of many small images, half of them untagged.

Not a test. The store is written through the registry's own store code (``Registry.put_manifest``, the
filesystem driver), ``--repositories`` x ``--images`` images of one config and two small layers each (one layer
shared by a repository's images); the first half of each repository's images lose their tags to the second half.
Then, each as a subprocess: ``serve gc --dry-run``, ``serve gc`` (untagged kept: little to do), ``serve gc
--delete-untagged`` (half the manifests and their blobs go), and a second ``--delete-untagged`` run (nothing
left). Wall time, CPU seconds and peak RSS (``ru_maxrss`` of the child) are printed for each, and the build's
own. Only local files are touched; the work directory is removed unless ``--keep``.

Run from the repository root::

    python benchmarks/gc_collect.py [--repositories 50] [--images 40]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from regtool import mediatypes as mt  # noqa: E402
from regtool.manifest import parse_manifest  # noqa: E402
from regtool.server.storage.filesystem import FilesystemDriver  # noqa: E402
from regtool.server.storage.registry import Registry  # noqa: E402
from tests.server.helpers import image_manifest  # noqa: E402


def build(root: Path, repositories: int, images: int) -> int:
    registry = Registry(FilesystemDriver(root))
    count = 0
    for r in range(repositories):
        name = f"team/repo{r}"
        shared = f"shared layer of {name} ".encode() * 64
        registry.link_blob(name, registry.blobs.put(shared))
        for i in range(images):
            config = json.dumps({"repo": r, "image": i}).encode()
            layer = f"layer {r}/{i} ".encode() * 64
            for blob in (config, layer):
                registry.link_blob(name, registry.blobs.put(blob))
            manifest = parse_manifest(image_manifest(config, [shared, layer]), mt.OCI_MANIFEST)
            # Tags t0..t(n/2-1): the first half's tags are then taken by the second half.
            registry.put_manifest(name, manifest, f"t{i % (images // 2)}")
            count += 1
    return count


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(label: str, *args: str) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "regtool", "serve", "gc", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    report = json.loads(done.stdout)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    counts = ", ".join(f"{n} {kind}" for kind, n in report["counts"].items()) or "nothing"
    cpu = _children_cpu() - cpu
    print(f"{label:<28} {elapsed:6.2f} s  CPU {cpu:6.2f} s  peak RSS {max(peak, before) / 1024:5.0f} MiB  {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repositories", type=int, default=50)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regtool-gc-bench-"))
    try:
        root = work / "registry"
        started, cpu = time.perf_counter(), time.process_time()
        count = build(root, args.repositories, args.images)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"built {count} manifests in {args.repositories} repositories in {elapsed:.1f} s (CPU {cpu:.1f} s)")
        common = ("--root", str(root), "--delay", "0", "--json")
        run("gc --delete-untagged --dry-run", *common, "--delete-untagged", "--dry-run")
        run("gc", *common)
        run("gc --delete-untagged", *common, "--delete-untagged")
        run("gc --delete-untagged again", *common, "--delete-untagged")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
