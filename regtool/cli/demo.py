"""``regtool demo``: registry v1's serial walk against v2's concurrent pull, on an embedded registry.

It starts ``regtool serve`` (v1 and v2, with added latency standing in for a WAN) on a free loopback port in a
background thread, generates a sample image, pushes it over both protocols, probes the registry, pulls the image
over v1 and over v2 with progress bars, and prints a table comparing them from the server's own request log.
Everything lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regtool import mediatypes as mt
from regtool.cli.app import app
from regtool.cli.console import handle_errors, real_console, run, stderr, stdout
from regtool.cli.units import format_bytes
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Descriptor
from regtool.reference import Reference

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from regtool.server.config import RequestEvent
    from regtool.server.embedded import EmbeddedServe

__all__ = ["demo", "embedded_serve", "make_sample_image"]


def make_sample_image(path: Path, *, layers: int, layer_size: int, tag: str = "latest") -> Descriptor:
    """An OCI layout at ``path`` holding one image of ``layers`` gzip layers of ~``layer_size`` random bytes.

    Random content does not compress, so every layer costs its full size on the wire.
    """
    layout = OciLayout.open(path, create=True)
    diff_ids: list[str] = []
    descriptors: list[dict[str, object]] = []
    history: list[dict[str, str]] = []
    for index in range(layers):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"layer{index:02d}/data.bin")
            info.size = layer_size
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(os.urandom(layer_size)))
        plain = buffer.getvalue()
        blob = gzip.compress(plain, compresslevel=1, mtime=0)
        digest = layout.blobs.put_bytes(None, blob)
        diff_ids.append(str(Digest.of(plain)))
        descriptors.append({"mediaType": mt.OCI_LAYER_GZIP, "digest": str(digest), "size": len(blob)})
        history.append({"created": "2026-01-01T00:00:00Z", "created_by": f"regtool demo layer {index}"})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        },
        sort_keys=True,
    ).encode()
    config_digest = layout.blobs.put_bytes(None, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
            "layers": descriptors,
        },
        sort_keys=True,
    ).encode()
    descriptor = Descriptor(mt.OCI_MANIFEST, layout.blobs.put_bytes(None, manifest), len(manifest))
    layout.add_manifest(descriptor, tag)
    return descriptor


@contextlib.contextmanager
def embedded_serve(root: Path, *, latency_ms: float) -> Iterator[EmbeddedServe]:
    """Run ``regtool serve`` (v1 + v2, filesystem storage under ``root``) in a thread on a free loopback port."""
    from regtool.server.embedded import embedded_serve as serve_in_thread  # lazily: the server stack

    with serve_in_thread(root, latency_ms=latency_ms, access_log=False, log_level="error") as server:
        yield server


@dataclass(frozen=True, slots=True)
class _Run:
    protocol: str
    seconds: float
    requests: int
    layer_requests: int
    in_flight: int
    nbytes: int


def _layer_downloads(events: list[RequestEvent]) -> list[RequestEvent]:
    return [
        e
        for e in events
        if e.method == "GET" and e.status in (200, 206) and (e.path.endswith("/layer") or "/blobs/sha256:" in e.path)
    ]


def _table(runs: list[_Run], layers: int, layer_size: int, latency: float) -> Table:
    from rich.table import Table

    table = Table(title=f"pull of {layers} x {format_bytes(layer_size)} layers at {latency:g} ms per request")
    table.add_column("protocol")
    table.add_column("downloads")
    table.add_column("requests", justify="right")
    table.add_column("in flight", justify="right")
    table.add_column("time", justify="right")
    table.add_column("speed-up", justify="right")
    slowest = max(run.seconds for run in runs)
    for run_ in runs:
        # v1 fetches layers only (the config is synthesized); v2 fetches the config blob and the layers.
        what = "layers, serial" if run_.protocol == "v1" else "blobs, concurrent"
        table.add_row(
            run_.protocol,
            f"{run_.layer_requests} {what}",
            str(run_.requests),
            f"max {run_.in_flight}",
            f"{run_.seconds:.2f} s",
            f"{slowest / run_.seconds:.1f}x" if run_.seconds > 0 else "-",
        )
    return table


@app.command()
def demo(
    layers: Annotated[int, typer.Option("--layers", min=1, max=64, help="Layers in the sample image.")] = 16,
    layer_kib: Annotated[int, typer.Option("--layer-kib", min=1, max=65536, help="Size of each layer, in KiB.")] = 1024,
    latency: Annotated[
        float, typer.Option("--latency", min=0, max=1000, help="Milliseconds added to every request (a WAN).")
    ] = 50.0,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, max=64, help="Concurrent v2 downloads.")] = 8,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bars.")] = False,
    timeline_dir: Annotated[
        Path | None,
        typer.Option(
            "--timeline",
            metavar="DIR",
            help="Also write the waterfalls to DIR: v1.svg, v2.svg, both in v1-v2.svg, and the raw events in "
            "v1.json, v2.json.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show v1's serial parent-chain pull against v2's concurrent pull, on an embedded registry.

    Starts a registry speaking both protocols on a free loopback port (with --latency per request), pushes a
    generated image over v1 and v2, probes it, pulls it both ways with progress, prints the comparison and
    both pulls as waterfalls on one time axis, and removes everything it made.
    """
    from regtool.cli.progress import open_progress  # here: rich.progress and the client load per command
    from regtool.cli.waterfall import check_timeline_dir, show_waterfalls
    from regtool.client.timeline import TimelineRecorder

    if timeline_dir is not None:
        with handle_errors():
            check_timeline_dir(timeline_dir)
    # Each pull's every request and transfer, for the waterfalls at the end.
    recorders: dict[str, TimelineRecorder] = {}

    layer_size = layer_kib * 1024
    out: Console = stdout

    async def main() -> list[_Run]:
        from regtool.client import Client

        runs: list[_Run] = []
        with tempfile.TemporaryDirectory(prefix="regtool-demo-") as work_dir:
            work = Path(work_dir)
            stderr.print(f"generating a sample image: {layers} layers of {format_bytes(layer_size)}")
            make_sample_image(work / "sample", layers=layers, layer_size=layer_size)
            with embedded_serve(work / "registry", latency_ms=latency) as server:
                ref = Reference.parse(f"{server.host}/demo/sample:latest")
                stderr.print(f"embedded registry (v1 + v2) on {server.host}, {latency:g} ms added per request")
                async with Client(jobs=jobs, plain_http=True) as client:
                    for protocol in ("v1", "v2"):
                        pushed = await client.push(str(work / "sample"), ref, protocol=protocol)
                        stderr.print(f"pushed {ref} over {protocol} in {pushed.seconds:.2f} s")
                    probe = await client.probe(server.host)
                    stderr.print(f"probe: {server.host} speaks {probe.verdict}")
                server.requests.take()
                for protocol in ("v1", "v2"):
                    stderr.print(f"pulling over {protocol} ...")
                    with open_progress(json_lines=False, quiet=quiet, console=stderr) as progress:
                        recorder = recorders[protocol] = TimelineRecorder(progress)
                        async with Client(jobs=jobs, progress=recorder, plain_http=True) as client:
                            started = time.monotonic()
                            result = await client.pull(ref, work / f"pulled-{protocol}", protocol=protocol)
                            seconds = time.monotonic() - started
                    events = server.requests.take()
                    downloads = _layer_downloads(events)
                    in_flight = server.requests.max_overlap(downloads)
                    runs.append(
                        _Run(protocol, seconds, len(events), len(downloads), in_flight, result.bytes_downloaded)
                    )
        return runs

    runs = run(main)
    out.print(_table(runs, layers, layer_size, latency))
    v1, v2 = runs
    speedup = v1.seconds / v2.seconds if v2.seconds > 0 else 0.0
    verdict = f"{speedup:.1f}x faster" if speedup >= 1 else "no faster here (too few round trips to matter)"
    out.print(
        f"v2 pulled the same image {verdict}: v1 walks the parent chain root first, one image's JSON and then its "
        f"layer before the next ({v1.in_flight} layer in flight at most); v2 reads every layer from the manifest "
        f"and fetched {v2.in_flight} at once.",
        markup=False,
        highlight=False,
    )
    detail = f"{layers} x {format_bytes(layer_size)} layers, {latency:g} ms per request"
    with handle_errors():
        written = show_waterfalls(real_console(out), recorders, detail=detail, directory=timeline_dir)
    for path in written:
        stderr.print(f"wrote {path}", markup=False, highlight=False)
