"""What a no-op re-sync costs at least on this machine, with the stack the project is built on, beside regtool's.

    python benchmarks/sync_floor.py [--runs 7] [--repos 4] [--tags 25] [--work DIR]

The setting of ``sync_vs_skopeo.py``'s loopback no-op (``all``): ``regtool serve`` holds ``--repos`` x ``--tags``
small images, a docker-registry (distribution 2.8.2) already holds their copy under ``mirror/``, and nothing has
changed since. Interleaved, each a fresh process, timed around the child (wall, and its user + system CPU):

- ``python``: the interpreter alone (``python -c pass``);
- ``stack``: the interpreter importing what any command of this project stands on (asyncio, httpx, typer, PyYAML
  for the skopeo file), as the console script imports them: the collector off, and without the optional imports
  regtool turns away (httpx's own command line, trio);
- ``httpx-minimal``: the least a no-op re-sync can do with httpx (this file, ``--minimal``): import the stack,
  list every repository's tags at the source, then HEAD each tag's manifest at both ends, 8 tags at a time over
  one ``httpx.AsyncClient`` with its own transport (httpcore's pool; 8 was the fastest of 4, 8, 16 and 32, since
  that pool looks at every connection for every request), and compare the digests: the same 2 requests per tag
  as regtool's no-op, and nothing else (no skopeo file, credentials, mirrors, retries, rate limits, output or
  referrers);
- ``httpx-pool-minimal``: the same minimal client (``--minimal-pool``) over regtool's own transport instead
  (``net/transport.build_http_client`` on a ``connections.ConnectionPool``: the one pool the client's API calls
  and blob bodies share, each request in a worker thread), 16 tags at a time as regtool compares them: what
  httpx costs on the transport the project's design fixes, with none of regtool's own work above it;
- ``regtool``: ``regtool sync --quiet --config FILE DEST/mirror``;
- ``skopeo``: ``skopeo sync --src yaml --dest docker --dest-tls-verify=false FILE DEST/mirror``.

Beside each, the CPU the two registries spent answering it (``/proc/PID/stat`` of both before and after): on
loopback they share the 2 cores with the client.

Each line's ratio to skopeo says where a bound on "no-op re-sync / skopeo's" can stand at best: the two
``httpx-*minimal`` lines are floors for a client written on httpx (the lower one for one on this project's
transport), run on these 2 cores beside the two registries.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_TAGS_AT_ONCE = 8
# Over regtool's pool, as many tags at once as regtool compares (``--jobs 8``: 4 x 8 tags, 2 requests each).
_POOL_TAGS_AT_ONCE = 16
_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


async def _minimal_noop(source: str, dest: str, repos: list[str], *, over_pool: bool) -> int:
    import httpx

    if over_pool:
        import ssl

        from regtool.client.net.connections import ConnectionPool
        from regtool.client.net.transport import build_http_client

        pool = ConnectionPool(ssl.create_default_context(), 30.0)
        made = build_http_client(pool=pool)
    else:
        made = httpx.AsyncClient(limits=httpx.Limits(max_connections=16))
    async with made as client:
        tag_lists = await asyncio.gather(*(client.get(f"http://{source}/v2/{repo}/tags/list") for repo in repos))
        work = [(repo, tag) for repo, listing in zip(repos, tag_lists, strict=True) for tag in listing.json()["tags"]]
        pending = iter(work)
        differing = 0

        async def compare() -> None:
            nonlocal differing
            for repo, tag in pending:
                at_source, at_dest = await asyncio.gather(
                    client.head(f"http://{source}/v2/{repo}/manifests/{tag}", headers={"Accept": _ACCEPT}),
                    client.head(f"http://{dest}/v2/mirror/{repo}/manifests/{tag}", headers={"Accept": _ACCEPT}),
                )
                if at_source.headers.get("docker-content-digest") != at_dest.headers.get("docker-content-digest"):
                    differing += 1

        await asyncio.gather(*(compare() for _ in range(_POOL_TAGS_AT_ONCE if over_pool else _TAGS_AT_ONCE)))
    if over_pool:
        pool.close()
    return differing


# What the ``stack`` contestant runs, and the minimal client before its requests.
_STACK = (
    "import gc, sys; gc.disable(); sys.modules['httpx._main'] = sys.modules['trio'] = None; "
    "import asyncio, httpx, typer, yaml"
)


def _minimal_main(argv: list[str], *, over_pool: bool) -> None:
    import gc

    gc.disable()
    sys.modules["httpx._main"] = sys.modules["trio"] = None  # type: ignore[assignment]
    import httpx  # noqa: F401
    import typer  # noqa: F401
    import yaml  # noqa: F401

    gc.enable()
    source, dest, *repos = argv
    differing = asyncio.run(_minimal_noop(source, dest, repos, over_pool=over_pool))
    if differing:
        raise SystemExit(f"{differing} tags differ between {source} and {dest}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    from benchmarks.bytecode import compile_for_runs
    from benchmarks.childrun import run_child
    from benchmarks.sync_vs_skopeo import source_registry, sync_argvs
    from benchmarks.wan import machine
    from tests.support.distribution import run_distribution

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--repos", type=int, default=4)
    parser.add_argument("--tags", type=int, default=25)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    compile_for_runs()
    work = args.work or Path(tempfile.mkdtemp(prefix="regtool-sync-floor-"))
    python = sys.executable
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    registries_cpu: dict[str, list[float]] = {}
    loads: list[float] = []
    try:
        with source_registry(work, args.repos, args.tags) as (server, catalog), run_distribution(work / "dest") as dest:
            regtool_argv = sync_argvs("regtool", "all", server.host, catalog, dest.host, work)[0]
            subprocess.run(regtool_argv, check=True, stdout=subprocess.DEVNULL)
            contestants = {
                "python": [python, "-c", "pass"],
                "stack": [python, "-c", _STACK],
                "httpx-minimal": [python, __file__, "--minimal", server.host, dest.host, *catalog.images],
                "httpx-pool-minimal": [python, __file__, "--minimal-pool", server.host, dest.host, *catalog.images],
                "regtool": regtool_argv,
                "skopeo": sync_argvs("skopeo", "all", server.host, catalog, dest.host, work)[0],
            }
            for argv in contestants.values():  # once each, untimed: page cache, skopeo's blob-info cache
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for run in range(args.runs):
                names = list(contestants)
                names = names[run % len(names) :] + names[: run % len(names)]
                pids = (server.process.pid, dest.process.pid)
                for name in names:
                    before = sum(map(_cpu_seconds, pids))
                    child = run_child(contestants[name])
                    registries_cpu.setdefault(name, []).append(sum(map(_cpu_seconds, pids)) - before)
                    times.setdefault(name, []).append(child.seconds)
                    cpu.setdefault(name, []).append(child.cpu_seconds)
                    loads.append(child.load)
                print(f"run {run + 1}: " + "  ".join(f"{n} {times[n][-1]:.3f}" for n in contestants), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    skopeo = statistics.median(times["skopeo"])
    print()
    print(f"{'; '.join(machine())}; {args.runs} interleaved runs, load (1 min) {min(loads):.2f}-{max(loads):.2f}")
    print()
    print("| contestant | wall (median) | CPU s (median) | registries' CPU s (median) | / skopeo's wall |")
    print("|---|---|---|---|---|")
    for name in times:
        wall, used, answering = (statistics.median(v[name]) for v in (times, cpu, registries_cpu))
        print(f"| {name} | {wall:.3f} s | {used:.3f} | {answering:.3f} | {wall / skopeo:.2f} |")
    for name in times:
        print(f"samples {name}: " + " ".join(f"{t:.3f}" for t in times[name]))


if __name__ == "__main__":
    if sys.argv[1:2] in (["--minimal"], ["--minimal-pool"]):
        _minimal_main(sys.argv[2:], over_pool=sys.argv[1] == "--minimal-pool")
    else:
        main()
