"""Server CPU time per GiB moved: ``regtool serve`` vs Debian's ``docker-registry``, blob upload and blob GET.

    python benchmarks/server_cpu.py [--mib 256] [--gets 4] [--parallel 2]

Not a test. Starts a fresh regtool serve (filesystem storage) and a fresh docker-registry, uploads one blob of
``--mib`` random bytes to each (``POST`` then one ``PUT ?digest=`` carrying the body, sent with ``sendfile``), then
GETs it ``--gets`` times (``--parallel`` at once, each body read into a reused 1 MiB buffer and dropped), and
prints, per server and per direction, the server process's CPU seconds (user + system, from /proc) per GiB and the
wall time. CPU per GiB does not depend much on what else runs on the machine, wall time does: this is the figure
to compare when the machine is shared. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.distribution import run_distribution  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _request(port: int, method: str, target: str, body: Path | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.putrequest(method, target)
    conn.putheader("Content-Length", str(body.stat().st_size if body else 0))
    if body is not None:
        conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    if body is not None:
        assert conn.sock is not None
        with open(body, "rb") as f:
            conn.sock.sendfile(f)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def upload(port: int, blob: Path, digest: str) -> None:
    """POST an upload session, then PUT the whole blob to it."""
    started = _request(port, "POST", "/v2/bench/cpu/blobs/uploads/")
    location = started.getheader("Location") or ""
    target = location.split(f":{port}", 1)[-1]
    target += ("&" if "?" in target else "?") + f"digest={digest}"
    done = _request(port, "PUT", target, blob)
    if done.status != 201:
        raise SystemExit(f"upload to port {port}: HTTP {done.status}")


def get(port: int, digest: str, size: int) -> None:
    """GET the blob, reading the body into a reused buffer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/v2/bench/cpu/blobs/{digest}")
    response = conn.getresponse()
    buffer = bytearray(MiB)
    got = 0
    while n := response.readinto(buffer):
        got += n
    conn.close()
    if response.status != 200 or got != size:
        raise SystemExit(f"GET from port {port}: HTTP {response.status}, {got} of {size} bytes")


def measure(pid: int, work: Callable[[], None]) -> tuple[float, float]:
    """(server CPU seconds, wall seconds) spent while ``work`` runs."""
    before = cpu_seconds(pid)
    started = time.perf_counter()
    work()
    return cpu_seconds(pid) - before, time.perf_counter() - started


def in_parallel(count: int, func: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        threads = [threading.Thread(target=func) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--gets", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regtool-server-cpu-"))
    try:
        blob = work / "blob.bin"
        hasher = hashlib.sha256()
        with open(blob, "wb") as f:
            for _ in range(args.mib):
                chunk = os.urandom(MiB)
                hasher.update(chunk)
                f.write(chunk)
        digest = f"sha256:{hasher.hexdigest()}"
        size = args.mib * MiB
        print(f"load average {os.getloadavg()[0]:.2f}; blob {args.mib} MiB; {args.gets} GETs, {args.parallel} at once")
        with (
            run_serve_process(work / "serve", "--quiet") as serve,
            run_distribution(work / "distribution") as distribution,
        ):
            servers = {
                "regtool serve": (serve.port, serve.process.pid),
                "distribution": (distribution.port, distribution.process.pid),
            }
            for name, (port, pid) in servers.items():
                os.sync()
                up_cpu, up_wall = measure(pid, functools.partial(upload, port, blob, digest))
                os.sync()
                rounds = max(1, args.gets // args.parallel)
                fetch = in_parallel(args.parallel, functools.partial(get, port, digest, size))

                def gets(fetch: Callable[[], None] = fetch, rounds: int = rounds) -> None:
                    for _ in range(rounds):
                        fetch()

                get_cpu, get_wall = measure(pid, gets)
                moved = rounds * args.parallel * size / (1 << 30)
                print(
                    f"{name:14} upload: {up_cpu / (size / (1 << 30)):.2f} CPU-s/GiB ({up_wall:.2f} s wall)   "
                    f"GET: {get_cpu / moved:.2f} CPU-s/GiB ({get_wall:.2f} s wall for {moved:.2f} GiB)",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
