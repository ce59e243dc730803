"""What ``regtool sync --referrers-recheck`` costs on a no-op re-sync, beside the same re-sync without it.

    python benchmarks/sync_referrers_recheck.py [--runs 3] [--delay-ms 50] [--repos 4] [--tags 25] [--signed 10]
                                                [--only delay,loopback] [--targets distribution,serve] [--work DIR]

The source is ``regtool serve`` seeded as ``benchmarks/sync_vs_skopeo.py`` seeds it (``--repos`` x ``--tags`` small
images sharing base layers); ``--signed`` of the tags (spread evenly) then get a signature attached by the OCI
referrers API alone (a manifest with a ``subject``, no tag). For each target, a fresh docker-registry 2.8.2 (no
referrers API: the tag schema) or a fresh ``regtool serve`` (the API), one first sync copies everything (the
signatures with their images), then the no-op re-sync is timed without and with ``--referrers-recheck``, the two
alternating and their order rotating each run, one invocation for every repository::

    regtool sync --quiet --config FILE DEST/mirror [--referrers-recheck]

so the recheck is measured in the steady state of a nightly job: every referrer is at the target already and
nothing is copied. ``delay`` puts both registries behind ``benchmarks/latency_proxy.py`` (``--delay-ms`` per
request burst and per new connection); ``loopback`` reaches them directly. Requests are counted in the source's
and the target's access logs; CPU is regtool's own (user + system). Prints progress, then a Markdown section for
BENCHMARKS.md. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shutil
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.bytecode import compile_for_runs  # noqa: E402
from benchmarks.sync_vs_skopeo import PREFIX, Catalog, source_registry  # noqa: E402
from benchmarks.wan import AccessLog, _regtool, _rotate, _timed, latency_proxy, machine  # noqa: E402
from regtool import mediatypes as mt  # noqa: E402
from regtool.digest import Digest  # noqa: E402
from tests.support.distribution import run_distribution  # noqa: E402
from tests.support.serve import ServeProcess, run_serve_process  # noqa: E402

SETTINGS = ("delay", "loopback")
TARGETS = ("distribution", "serve")
VARIANTS = ("plain", "recheck")
SIGNATURE = "application/vnd.example.signature.v1"


def _put_blob(http: httpx.Client, repository: str, data: bytes) -> None:
    started = http.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    location = httpx.URL(started.headers["location"]).copy_merge_params({"digest": str(Digest.of(data))})
    http.put(location, content=data).raise_for_status()


def sign(server: ServeProcess, catalog: Catalog, count: int) -> int:
    """Attach a signature by ``subject`` (no tag) to ``count`` tags spread over the catalog; how many it signed."""
    tagged = [(repository, tag, digest) for repository, tags in catalog.images.items() for tag, digest in tags.items()]
    step = max(1, len(tagged) // max(1, count))
    chosen = tagged[::step][:count]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for repository, tag, digest in chosen:
            subject = http.get(f"/v2/{repository}/manifests/{digest}", headers={"Accept": mt.MANIFEST_ACCEPT})
            subject.raise_for_status()
            payload = f"signed {repository}:{tag}".encode()
            _put_blob(http, repository, mt.EMPTY_JSON)
            _put_blob(http, repository, payload)
            body = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": SIGNATURE,
                "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_JSON_DIGEST, "size": 2},
                "layers": [{"mediaType": SIGNATURE, "digest": str(Digest.of(payload)), "size": len(payload)}],
                "subject": {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(subject.content)},
            }
            raw = json.dumps(body).encode()
            put = http.put(
                f"/v2/{repository}/manifests/{Digest.of(raw)}", content=raw, headers={"Content-Type": mt.OCI_MANIFEST}
            )
            put.raise_for_status()
    return len(chosen)


@dataclass(frozen=True)
class Phase:
    target: str
    setting: str
    variant: str
    seconds: float
    cpu_seconds: float
    source_requests: int
    dest_requests: int
    load: float

    @property
    def requests(self) -> int:
        return self.source_requests + self.dest_requests


@contextlib.contextmanager
def target_registry(kind: str, root: Path) -> Iterator[tuple[int, Path]]:
    """A fresh target: its port and its access log."""
    shutil.rmtree(root, ignore_errors=True)
    if kind == "distribution":
        with run_distribution(root, quiet=False) as registry:
            yield registry.port, registry.log_path
    else:
        with run_serve_process(root, "--no-v1") as server:
            yield server.port, server.log_path
    shutil.rmtree(root, ignore_errors=True)


def measure(
    kind: str, setting: str, runs: int, server: ServeProcess, catalog: Catalog, work: Path, delay_ms: float
) -> list[Phase]:
    phases: list[Phase] = []
    source_log = AccessLog(server.log_path)
    with contextlib.ExitStack() as stack:
        port, log_path = stack.enter_context(target_registry(kind, work / f"target-{kind}-{setting}"))
        source_host, dest_host = server.host, f"127.0.0.1:{port}"
        if setting == "delay":
            proxies = work / "proxy-logs"
            source_host = stack.enter_context(latency_proxy(server.port, delay_ms, proxies)).host
            dest_host = stack.enter_context(latency_proxy(port, delay_ms, proxies)).host
        dest_log = AccessLog(log_path)
        config = work / f"skopeo-sync-{setting}.yaml"
        images = "".join(f"    {repository}: []\n" for repository in catalog.images)
        config.write_text(f"{source_host}:\n  images:\n{images}  tls-verify: false\n")
        argv = [*_regtool(), "sync", "--quiet", "--config", str(config), f"{dest_host}/{PREFIX}"]
        first = _timed("regtool", argv)
        print(f"  {kind} {setting} first sync {first.seconds:.2f} s", flush=True)
        for run in range(runs):
            for variant in _rotate(VARIANTS, run):
                source_log.mark()
                dest_log.mark()
                timed = _timed("regtool", [*argv, "--referrers-recheck"] if variant == "recheck" else argv)
                phase = Phase(
                    kind,
                    setting,
                    variant,
                    timed.seconds,
                    timed.cpu_seconds or 0.0,
                    len(source_log.since_mark()),
                    len(dest_log.since_mark()),
                    timed.load,
                )
                phases.append(phase)
                print(
                    f"  {kind} {setting} run {run + 1} {variant:7} {phase.seconds:6.2f} s  CPU {phase.cpu_seconds:5.2f}"
                    f" s  requests {phase.source_requests} + {phase.dest_requests}  load {phase.load:.2f}",
                    flush=True,
                )
    return phases


def _range(values: Sequence[float], fmt: str = "{:g}") -> str:
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def report(phases: list[Phase], args: argparse.Namespace, tags: int, signed: int, started: str) -> None:
    out = [
        "",
        f"`python benchmarks/sync_referrers_recheck.py --runs {args.runs} --delay-ms {args.delay_ms:g} --repos "
        f"{args.repos} --tags {args.tags} --signed {args.signed} --only {args.only} --targets {args.targets}`, "
        f"{started} to {_now()}: {tags} tags, {signed} of them signed through the referrers API alone; medians of "
        f"{args.runs} interleaved no-op re-syncs per variant (one invocation for every repository).",
        "",
        "| target | setting | no-op | with --referrers-recheck | ratio | CPU plain / recheck "
        "| requests plain / recheck | per tag plain / recheck | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    samples: list[str] = []
    for kind in TARGETS:
        for setting in SETTINGS:
            by = {v: [p for p in phases if (p.target, p.setting, p.variant) == (kind, setting, v)] for v in VARIANTS}
            if not all(by.values()):
                continue
            med = {v: statistics.median(p.seconds for p in by[v]) for v in VARIANTS}
            cpu = " / ".join(f"{statistics.median(p.cpu_seconds for p in by[v]):.2f} s" for v in VARIANTS)
            requests = " / ".join(_range([p.requests for p in by[v]]) for v in VARIANTS)
            per_tag = " / ".join(_range([p.requests / tags for p in by[v]], "{:.2f}") for v in VARIANTS)
            label = f"+{args.delay_ms:g} ms" if setting == "delay" else "loopback"
            loads = [p.load for v in VARIANTS for p in by[v]]
            out.append(
                f"| {kind} | {label} | {med['plain']:.2f} s | {med['recheck']:.2f} s "
                f"| **{med['recheck'] / med['plain']:.2f}** | {cpu} | {requests} | {per_tag} "
                f"| {_range(loads, '{:.2f}')} |"
            )
            samples.append(
                f"{kind} {label}: " + "; ".join(f"{v} " + " ".join(f"{p.seconds:.2f}" for p in by[v]) for v in VARIANTS)
            )
    out += ["", "Samples (s): " + ". ".join(samples) + ".", "", "Machine:", "", *machine()]
    print("\n".join(out), flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="interleaved no-op re-syncs per variant (3)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="per request and per new connection (50)")
    parser.add_argument("--repos", type=int, default=4, help="repositories at the source (4)")
    parser.add_argument("--tags", type=int, default=25, help="tags per repository (25)")
    parser.add_argument("--signed", type=int, default=10, help="tags given a signature by the API alone (10)")
    parser.add_argument("--only", default=",".join(SETTINGS), help=f"comma-separated: {','.join(SETTINGS)}")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated: {','.join(TARGETS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/regtool-bench-recheck"))
    args = parser.parse_args()
    settings = [s.strip() for s in args.only.split(",") if s.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.runs < 1 or args.delay_ms < 0 or args.repos < 1 or args.tags < 1 or args.signed < 0:
        parser.error("--runs, --repos and --tags must be at least 1, --delay-ms and --signed at least 0")
    if set(settings) - set(SETTINGS) or set(targets) - set(TARGETS) or not (settings and targets):
        parser.error(f"settings are {', '.join(SETTINGS)}; targets {', '.join(TARGETS)}")
    if "distribution" in targets and shutil.which("docker-registry") is None:
        raise SystemExit("docker-registry is not installed")
    compile_for_runs()
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    started = _now()
    phases: list[Phase] = []
    with source_registry(work, args.repos, args.tags) as (server, catalog):
        signed = sign(server, catalog, args.signed)
        for kind in targets:
            for setting in settings:
                phases += measure(kind, setting, args.runs, server, catalog, work, args.delay_ms)
    shutil.rmtree(work / "proxy-logs", ignore_errors=True)
    report(phases, args, catalog.tag_count, signed, started)


if __name__ == "__main__":
    main()
