"""Benchmark: skopeo pushing to and pulling from ``regtool serve`` vs Debian's ``docker-registry``.

Not a test. Generates two OCI layouts with incompressible gzip layers (16 x 32 MiB and 2 x 512 MiB), then, for
each round, starts a fresh regtool serve and a fresh docker-registry (new roots and ports, so skopeo's blob-info
cache cannot turn pushes into mounts) and times, interleaved:

    skopeo --insecure-policy copy --dest-tls-verify=false oci:<layout>:bench docker://127.0.0.1:<port>/bench/<image>:r<N>
    skopeo --insecure-policy copy --src-tls-verify=false docker://127.0.0.1:<port>/bench/<image>:r<N> oci:<out>:bench

Prints the median wall times, the serve/distribution ratio (< 1.0: serve is faster), regtool serve's peak RSS
(VmHWM) and the range of the 1-minute load average seen before the timed runs. Only 127.0.0.1 is contacted;
the work directory is removed at the end unless ``--keep``.

Run from the repository root::

    python benchmarks/serve_vs_distribution.py [--rounds 3] [--workdir /tmp/regtool-bench] [--small-only]
    python benchmarks/serve_vs_distribution.py --blob-gib 1     # serve's peak RSS for a 1 GiB push + pull
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.distribution import run_distribution  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

MiB = 1024 * 1024
IMAGES = {"16x32MiB": (16, 32 * MiB), "2x512MiB": (2, 512 * MiB)}


class RandomReader:
    """A file-like object of ``size`` random bytes (incompressible)."""

    def __init__(self, size: int) -> None:
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        self.remaining -= n
        return os.urandom(n)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _blob(layout: Path, source: Path) -> dict[str, object]:
    digest = _hash_file(source)
    target = layout / "blobs" / "sha256" / digest[7:]
    target.parent.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    os.replace(source, target)
    return {"digest": digest, "size": size}


def make_layout(layout: Path, count: int, size: int) -> None:
    """An OCI layout tagged ``bench``: ``count`` layers, each a gzipped tar of ``size`` random bytes."""
    if (layout / "index.json").exists():
        return
    layout.mkdir(parents=True, exist_ok=True)
    layers, diff_ids = [], []
    for i in range(count):
        tar_path = layout / f"layer{i}.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data/file{i}.bin")
            info.size = size
            info.mtime = 1_700_000_000
            tar.addfile(info, RandomReader(size))
        diff_ids.append(_hash_file(tar_path))
        gz_path = layout / f"layer{i}.tar.gz"
        with open(tar_path, "rb") as src, gzip.open(gz_path, "wb", compresslevel=1) as dst:
            while chunk := src.read(MiB):
                dst.write(chunk)
        tar_path.unlink()
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, gz_path)})
    config_path = layout / "config.json"
    config_path.write_text(
        json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    )
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config_path)}
    manifest_path = layout / "manifest.json"
    manifest_path.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config,
                "layers": layers,
            }
        )
    )
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, manifest_path)}
    manifest["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))


LOADS: list[float] = []  # the 1-minute load average before each timed run


def skopeo(*args: str) -> float:
    # Flush dirty pages first, so one registry's writes (distribution does not fsync) never slow the next run.
    os.sync()
    LOADS.append(os.getloadavg()[0])
    started = time.monotonic()
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True, timeout=900)
    return time.monotonic() - started


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def registries(work: Path, round_no: int) -> Iterator[dict[str, tuple[str, int | None]]]:
    """A fresh regtool serve and docker-registry: name -> (host:port, pid of serve or None)."""
    with (
        run_serve_process(work / f"serve-root-{round_no}", "--quiet") as serve,
        run_distribution(work / f"distribution-root-{round_no}") as dist,
    ):
        yield {"serve": (serve.host, serve.process.pid), "distribution": (dist.host, None)}
    shutil.rmtree(work / f"serve-root-{round_no}", ignore_errors=True)
    shutil.rmtree(work / f"distribution-root-{round_no}", ignore_errors=True)


def blob_rss(work: Path, gib: int) -> None:
    """Push and pull one ``gib`` GiB blob over plain HTTP (httpx, streamed) and report serve's peak RSS."""
    import httpx

    blob = work / "big.bin"
    digest = hashlib.sha256()
    with open(blob, "wb") as f:
        for _ in range(gib * 1024):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            f.write(chunk)
    expected = "sha256:" + digest.hexdigest()

    def body() -> Iterator[bytes]:
        with open(blob, "rb") as f:
            while chunk := f.read(MiB):
                yield chunk

    with run_serve_process(work / "rss-root", "--quiet") as serve, httpx.Client(base_url=serve.url, timeout=600) as c:
        before = peak_rss_kib(serve.process.pid)
        started = time.monotonic()
        location = c.post("/v2/rss/blobs/uploads/").headers["location"]
        assert c.put(location, params={"digest": expected}, content=body()).status_code == 201
        pushed = time.monotonic() - started
        started = time.monotonic()
        check = hashlib.sha256()
        with c.stream("GET", f"/v2/rss/blobs/{expected}") as response:
            for chunk in response.iter_bytes(MiB):
                check.update(chunk)
        pulled = time.monotonic() - started
        assert "sha256:" + check.hexdigest() == expected
        peak = peak_rss_kib(serve.process.pid)
    shutil.rmtree(work / "rss-root", ignore_errors=True)
    blob.unlink()
    print(f"{gib} GiB blob: push {pushed:.2f} s, pull {pulled:.2f} s (httpx client, one stream each)")
    print(f"regtool serve RSS: {before / 1024:.1f} MiB idle, peak (VmHWM) {peak / 1024:.1f} MiB after push + pull")


Times = dict[tuple[str, str, str], list[float]]


def timed_round(
    work: Path,
    images: Iterable[str],
    servers: dict[str, tuple[str, int | None]],
    round_no: int,
    pulls: int,
    times: Times,
) -> int:
    """One round: skopeo pushes each image (``work/<image>``, an OCI layout) to each registry, then pulls it
    ``pulls`` times from each, who goes first alternating; times go to ``times[(image, op, server)]``. Returns
    serve's peak RSS so far (KiB)."""
    order = list(servers.items()) if round_no % 2 == 0 else list(reversed(servers.items()))
    for image in images:
        for server, (host, _) in order:
            ref = f"docker://{host}/bench/{image.lower()}:r{round_no}"
            elapsed = skopeo("copy", "--dest-tls-verify=false", f"oci:{work / image}:bench", ref)
            times.setdefault((image, "push", server), []).append(elapsed)
        for pull_no in range(pulls):
            # Who goes first alternates on every pull, not only every round.
            for server, (host, _) in order if pull_no % 2 == 0 else reversed(order):
                ref = f"docker://{host}/bench/{image.lower()}:r{round_no}"
                out = work / f"pull-{server}"
                elapsed = skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:bench")
                shutil.rmtree(out)
                times.setdefault((image, "pull", server), []).append(elapsed)
    pid = servers["serve"][1]
    assert pid is not None
    return peak_rss_kib(pid)


def report(images: Iterable[str], times: Times, peak_kib: int) -> None:
    """The medians, serve / distribution ratios and every sample, serve's peak RSS and the load seen."""
    print()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"{'image':10} {'op':5} {'serve s':>9} {'distribution s':>15} {'ratio':>6}")
    for image in images:
        for op in ("push", "pull"):
            ours = statistics.median(times[(image, op, "serve")])
            theirs = statistics.median(times[(image, op, "distribution")])
            samples = " ".join(
                f"{server}=[{', '.join(f'{t:.2f}' for t in times[(image, op, server)])}]"
                for server in ("serve", "distribution")
            )
            print(f"{image:10} {op:5} {ours:9.2f} {theirs:15.2f} {ours / theirs:6.2f}   {samples}")
    print(f"regtool serve peak RSS (VmHWM): {peak_kib / 1024:.1f} MiB")
    print(f"load average (1 min) before the timed runs: {min(LOADS):.2f} to {max(LOADS):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--small-only", action="store_true", help="only the 16 x 32 MiB image")
    parser.add_argument("--pulls", type=int, default=1, help="pulls per image and round, alternating (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the generated layouts")
    parser.add_argument("--blob-gib", type=int, default=0, help="instead: push+pull one N GiB blob, report RSS")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="regtool-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.blob_gib:
        try:
            blob_rss(work, args.blob_gib)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        return
    images = {k: v for k, v in IMAGES.items() if not args.small_only or k == "16x32MiB"}
    for name, (count, size) in images.items():
        print(f"generating {name} ...", flush=True)
        make_layout(work / name, count, size)
    times: Times = {}
    peak = 0
    try:
        for round_no in range(args.rounds):
            with registries(work, round_no) as servers:
                peak = max(peak, timed_round(work, images, servers, round_no, args.pulls, times))
                print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(images, times, peak)


if __name__ == "__main__":
    main()
