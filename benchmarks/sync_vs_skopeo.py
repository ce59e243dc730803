"""The mirror job: ``regtool sync`` against ``skopeo sync --src docker --dest docker``, first sync and no-op re-sync.

    python benchmarks/sync_vs_skopeo.py [--runs 3] [--delay-ms 50] [--repos 4] [--tags 25] [--only delay,loopback]
                                        [--modes each,all] [--tools regtool,skopeo] [--work DIR]

The source is ``regtool serve`` (a subprocess, filesystem storage) holding ``--repos`` repositories
(``bench/app0``...) of ``--tags`` small tags each (``1.0.0``...), seeded once over HTTP: every image has the same two
base layers (256 KiB and 64 KiB of random bytes), one layer per repository (32 KiB), one per tag (4 KiB) and its
own config, so a mirror job meets blobs it already copied at every turn. Every timed run syncs into a FRESH
docker-registry (distribution 2.8.2; a new port, so a new registry name for skopeo's blob-info cache), first
(everything is copied) and then again (nothing changed: the no-op re-sync). Modes (``--modes``):

- ``each``: one repository per invocation, as ``skopeo sync --src docker`` takes them; the time of a sync is the
  sum over the repositories (each one process, so each pays its start-up)::

    regtool sync --quiet SRC/bench/appN DEST/mirror
    skopeo sync --src docker --dest docker --src-tls-verify=false --dest-tls-verify=false SRC/bench/appN DEST/mirror

- ``all``: every repository in one invocation, from one skopeo sync YAML file (``SRC: {images: {bench/appN: []},
  tls-verify: false}``, an empty list meaning every tag) that both tools read as it is::

    regtool sync --quiet --config FILE DEST/mirror
    skopeo sync --src yaml --dest docker --dest-tls-verify=false FILE DEST/mirror

Settings
(``--only``): ``delay``, where both registries are reached through ``benchmarks/latency_proxy.py`` (``--delay-ms``
per request burst and once more per new connection, as in ``wan.py``; one proxy per registry, fresh for each
run), and ``loopback``, where both are reached directly and interpreter start-up weighs most. The tools alternate
and their order rotates every run.

CPU is each tool's own (user + system, summed over its invocations; the registries' is not counted). Requests
are counted at the servers (the source's and the destination's access logs) for each phase; "per no-op
tag" is the no-op re-sync's requests at both ends divided by the number of tags. After each first sync the
destination is checked, untimed, on loopback: every tag present, with the source's manifest digest.

Prints progress, then a Markdown section (medians, ratios, samples, the machine) ready for BENCHMARKS.md.
Nothing here is a test. The source registry and the destinations are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import random
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.bytecode import compile_for_runs  # noqa: E402
from benchmarks.wan import AccessLog, Run, _regtool, _rotate, _timed, latency_proxy, machine  # noqa: E402
from regtool import mediatypes as mt  # noqa: E402
from regtool.digest import Digest  # noqa: E402
from tests.support.distribution import Distribution, run_distribution  # noqa: E402
from tests.support.images import gzip_bytes, tar_bytes  # noqa: E402
from tests.support.serve import ServeProcess, run_serve_process  # noqa: E402

SETTINGS = ("delay", "loopback")
MODES = ("each", "all")
TOOLS = ("regtool", "skopeo")
PREFIX = "mirror"


# ---------------------------------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class Catalog:
    """What the source holds: repository -> tag -> manifest digest."""

    images: dict[str, dict[str, str]]

    @property
    def tag_count(self) -> int:
        return sum(len(tags) for tags in self.images.values())


def _layer(rng: random.Random, name: str, size: int) -> bytes:
    return gzip_bytes(tar_bytes({name: rng.randbytes(size)}))


def _push_blob(http: httpx.Client, repository: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    if http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
        return digest
    started = http.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    location = httpx.URL(started.headers["location"]).copy_merge_params({"digest": str(digest)})
    http.put(location, content=data).raise_for_status()
    return digest


def seed(server: ServeProcess, repos: int, tags: int) -> Catalog:
    """Push ``repos`` x ``tags`` small images sharing their base layers (deterministic bytes)."""
    rng = random.Random(12)
    base = [_layer(rng, "base/os.bin", 256 << 10), _layer(rng, "base/runtime.bin", 64 << 10)]
    images: dict[str, dict[str, str]] = {}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for r in range(repos):
            repository = f"bench/app{r}"
            shared = _layer(rng, f"app{r}/lib.bin", 32 << 10)
            images[repository] = {}
            for t in range(tags):
                tag = f"1.0.{t}"
                layers = [*base, shared, _layer(rng, f"app{r}/build-{t}.bin", 4 << 10)]
                config = json.dumps(
                    {
                        "architecture": "amd64",
                        "os": "linux",
                        "config": {"Labels": {"version": tag}},
                        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{'0' * 63}{i}" for i in range(4)]},
                    },
                    sort_keys=True,
                ).encode()
                for blob in (*layers, config):
                    _push_blob(http, repository, blob)
                manifest = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": mt.OCI_MANIFEST,
                        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
                        "layers": [
                            {"mediaType": mt.OCI_LAYER_GZIP, "digest": str(Digest.of(layer)), "size": len(layer)}
                            for layer in layers
                        ],
                    }
                ).encode()
                response = http.put(
                    f"/v2/{repository}/manifests/{tag}", content=manifest, headers={"Content-Type": mt.OCI_MANIFEST}
                )
                response.raise_for_status()
                images[repository][tag] = str(Digest.of(manifest))
    return Catalog(images)


# ---------------------------------------------------------------------------------------------------- the tools


def sync_argvs(tool: str, mode: str, source: str, catalog: Catalog, dest: str, work: Path) -> list[list[str]]:
    """The invocations of one sync of every repository."""
    if mode == "all":
        config = work / f"skopeo-sync-{source.replace(':', '_')}.yaml"
        images = "".join(f"    {repository}: []\n" for repository in catalog.images)
        config.write_text(f"{source}:\n  images:\n{images}  tls-verify: false\n")
        if tool == "regtool":
            return [[*_regtool(), "sync", "--quiet", "--config", str(config), f"{dest}/{PREFIX}"]]
        return [
            [
                "skopeo",
                "sync",
                "--src",
                "yaml",
                "--dest",
                "docker",
                "--dest-tls-verify=false",
                str(config),
                f"{dest}/{PREFIX}",
            ]
        ]
    if tool == "regtool":
        return [[*_regtool(), "sync", "--quiet", f"{source}/{r}", f"{dest}/{PREFIX}"] for r in catalog.images]
    skopeo = [
        "skopeo",
        "sync",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]
    return [[*skopeo, f"{source}/{r}", f"{dest}/{PREFIX}"] for r in catalog.images]


def _head(conn: http.client.HTTPConnection, path: str) -> tuple[int, str | None]:
    conn.request("HEAD", path, headers={"Accept": mt.MANIFEST_ACCEPT})
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("Docker-Content-Digest")


def _check(registry: Distribution, tool: str, catalog: Catalog) -> None:
    """Every tag at the destination, with the source's digest (untimed, on loopback). Below DEST/mirror a
    repository keeps its path or only its last part (skopeo's way), as each tool does it."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        for repository, tags in catalog.images.items():
            for tag, digest in tags.items():
                names = (f"{PREFIX}/{repository}", f"{PREFIX}/{repository.rsplit('/', 1)[-1]}")
                answers = [_head(conn, f"/v2/{name}/manifests/{tag}") for name in names]
                if (200, digest) not in answers:
                    raise SystemExit(f"{tool}: {repository}:{tag} is not at the destination with {digest}: {answers}")
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Phase:
    """One sync of every repository by one tool: its time (the sum over the invocations) and requests."""

    tool: str
    setting: str
    mode: str  # "each" or "all"
    kind: str  # "first" or "noop"
    seconds: float
    source_requests: int
    dest_requests: int
    load: float
    cpu_seconds: float = 0.0  # the tool's own user + system CPU (the registries' not counted)

    @property
    def requests(self) -> int:
        return self.source_requests + self.dest_requests


@dataclass
class Results:
    delay_ms: float
    phases: list[Phase] = field(default_factory=list)


def _sync_all(
    argvs: list[list[str]], tool: str, source_log: AccessLog, dest_log: AccessLog
) -> tuple[float, int, int, float, float]:
    source_log.mark()
    dest_log.mark()
    runs: list[Run] = [_timed(tool, argv) for argv in argvs]
    return (
        sum(r.seconds for r in runs),
        len(source_log.since_mark()),
        len(dest_log.since_mark()),
        runs[0].load,
        sum(r.cpu_seconds or 0.0 for r in runs),
    )


def one_run(
    tool: str, setting: str, mode: str, run: int, catalog: Catalog, server: ServeProcess, work: Path, delay_ms: float
) -> list[Phase]:
    root = work / f"dest-{tool}-{setting}-{mode}-{run}"
    shutil.rmtree(root, ignore_errors=True)
    phases: list[Phase] = []
    source_log = AccessLog(server.log_path)
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(run_distribution(root, quiet=False))
        source_host, dest_host = server.host, registry.host
        if setting == "delay":
            proxies = work / "proxy-logs"
            source_host = stack.enter_context(latency_proxy(server.port, delay_ms, proxies)).host
            dest_host = stack.enter_context(latency_proxy(registry.port, delay_ms, proxies)).host
        dest_log = AccessLog(registry.log_path)
        argvs = sync_argvs(tool, mode, source_host, catalog, dest_host, work)
        for kind in ("first", "noop"):
            seconds, at_source, at_dest, load, cpu = _sync_all(argvs, tool, source_log, dest_log)
            phases.append(Phase(tool, setting, mode, kind, seconds, at_source, at_dest, load, cpu))
            print(
                f"  {setting} {mode} run {run + 1} {tool:8} {kind:5} {seconds:7.2f} s  CPU {cpu:5.2f} s  requests "
                f"{at_source} + {at_dest}  load {load:.2f}",
                flush=True,
            )
            if kind == "first":
                _check(registry, tool, catalog)
    shutil.rmtree(root, ignore_errors=True)
    return phases


# ---------------------------------------------------------------------------------------------------- report


def _median(phases: Sequence[Phase]) -> float:
    return statistics.median(p.seconds for p in phases)


def _range(values: Sequence[float], fmt: str = "{:g}") -> str:
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def report(results: Results, args: argparse.Namespace, catalog: Catalog, started: str) -> None:
    d = f"{results.delay_ms:g} ms"
    tags = catalog.tag_count
    out = [
        "",
        f"## sync: {len(catalog.images)} repositories x {tags // len(catalog.images)} tags, serve -> distribution "
        "(benchmarks/sync_vs_skopeo.py)",
        "",
        f"`python benchmarks/sync_vs_skopeo.py --runs {args.runs} --delay-ms {results.delay_ms:g} --repos "
        f"{args.repos} --tags {args.tags} --only {args.only} --modes {args.modes} --tools {args.tools}`, {started} "
        f"to {_now()}; medians of {args.runs} interleaved runs, each tool into a fresh docker-registry. Invocations: "
        f"`each` is one per repository ({len(catalog.images)}, times summed), `all` one for every repository (the "
        "same skopeo sync YAML file). Requests: logged by the source and the destination (min-max over the runs).",
        "",
        "| setting | invocations | sync | regtool | skopeo | regtool / skopeo | CPU r / s | requests r / s "
        "| requests per tag r / s | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    samples: list[str] = []
    cases = [(s, m) for s in SETTINGS for m in MODES if any((p.setting, p.mode) == (s, m) for p in results.phases)]
    for setting, mode in cases:
        label = f"+{d}" if setting == "delay" else "loopback"
        for kind, name in (("first", "first"), ("noop", "no-op re-sync")):
            by = {
                t: [p for p in results.phases if (p.tool, p.setting, p.mode, p.kind) == (t, setting, mode, kind)]
                for t in TOOLS
            }
            if not all(by.values()):
                continue
            med = {t: _median(by[t]) for t in TOOLS}
            cpu = " / ".join(f"{statistics.median(p.cpu_seconds for p in by[t]):.2f} s" for t in TOOLS)
            requests = " / ".join(_range([p.requests for p in by[t]]) for t in TOOLS)
            per_tag = " / ".join(_range([p.requests / tags for p in by[t]], "{:.2f}") for t in TOOLS)
            loads = [p.load for t in TOOLS for p in by[t]]
            out.append(
                f"| {label} | {mode} | {name} | {med['regtool']:.2f} s | {med['skopeo']:.2f} s "
                f"| **{med['regtool'] / med['skopeo']:.2f}** | {cpu} | {requests} | {per_tag} "
                f"| {_range(loads, '{:.2f}')} |"
            )
            samples.append(
                f"{label} {mode} {name}: "
                + "; ".join(f"{t} " + " ".join(f"{p.seconds:.2f}" for p in by[t]) for t in TOOLS)
            )
    out += ["", "Samples (s): " + ". ".join(samples) + ".", "", "Machine:", "", *machine()]
    print("\n".join(out), flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------------------------------------------- main


@contextlib.contextmanager
def source_registry(work: Path, repos: int, tags: int) -> Iterator[tuple[ServeProcess, Catalog]]:
    root = work / "source"
    shutil.rmtree(root, ignore_errors=True)
    with run_serve_process(root, "--no-v1") as server:
        print(f"seeding {repos} x {tags} images into {server.host} ...", flush=True)
        catalog = seed(server, repos, tags)
        yield server, catalog
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per tool and setting (default 3)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="per request and per new connection (50)")
    parser.add_argument("--repos", type=int, default=4, help="repositories at the source (4)")
    parser.add_argument("--tags", type=int, default=25, help="tags per repository (25)")
    parser.add_argument("--only", default=",".join(SETTINGS), help=f"comma-separated settings: {','.join(SETTINGS)}")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: each,all (both)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated: regtool,skopeo (both)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/regtool-bench-sync"))
    args = parser.parse_args()
    settings = [s.strip() for s in args.only.split(",") if s.strip()]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.runs < 1 or args.delay_ms < 0 or args.repos < 1 or args.tags < 1:
        parser.error("--runs, --repos and --tags must be at least 1, --delay-ms at least 0")
    if set(settings) - set(SETTINGS) or set(tools) - set(TOOLS) or set(modes) - set(MODES):
        parser.error(f"settings are {', '.join(SETTINGS)}; modes {', '.join(MODES)}; tools {', '.join(TOOLS)}")
    if not (settings and tools and modes):
        parser.error("nothing to run")
    for binary in ("skopeo", "docker-registry"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} is not installed")
    compile_for_runs()
    if "regtool" in tools:
        preflight = subprocess.run([*_regtool(), "sync", "--help"], capture_output=True, text=True)
        if preflight.returncode != 0:
            raise SystemExit(f"regtool sync does not start:\n{preflight.stderr[-2000:]}")
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    started = _now()
    results = Results(args.delay_ms)
    with source_registry(work, args.repos, args.tags) as (server, catalog):
        for setting in settings:
            for mode in modes:
                for run in range(args.runs):
                    for tool in _rotate(tools, run):
                        results.phases += one_run(tool, setting, mode, run, catalog, server, work, args.delay_ms)
    shutil.rmtree(work / "proxy-logs", ignore_errors=True)
    if set(tools) == set(TOOLS):
        report(results, args, catalog, started)


if __name__ == "__main__":
    main()
