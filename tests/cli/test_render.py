"""Human output of results: what a user reads on stdout."""

from __future__ import annotations

import io

from rich.console import Console

from regtool.cli.render import render_inspect, render_lines, render_probe, render_pull, render_push
from regtool.client.results import (
    InspectResult,
    LayerInfo,
    ProbeEvidence,
    ProbeResult,
    PullResult,
    PushResult,
    V1Info,
    V2Info,
)
from regtool.digest import Digest

D1 = Digest("sha256", "1" * 64)
D2 = Digest("sha256", "2" * 64)
D3 = Digest("sha256", "3" * 64)


def _render(fn: object, result: object) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=60, color_system=None, soft_wrap=True)
    fn(console, result)  # type: ignore[operator]
    return out.getvalue().splitlines()


def test_probe_v2_with_auth_and_v1() -> None:
    result = ProbeResult(
        registry="reg.example:5000",
        scheme="https",
        v2=V2Info(True, "registry/2.0", 401, "bearer", "https://auth.example/token", "reg"),
        v1=V1Info(True, "0.6.0", True, 200),
    )
    assert _render(render_probe, result) == [
        "registry  https://reg.example:5000",
        "verdict   both",
        "v2        yes (registry/2.0, HTTP 401); auth bearer realm=https://auth.example/token service=reg",
        "v1        yes (version 0.6.0, standalone true)",
    ]


def test_probe_neither_lists_the_evidence() -> None:
    result = ProbeResult(
        registry="127.0.0.1:9",
        scheme=None,
        v2=V2Info(False),
        v1=V1Info(False, status=404),
        evidence=(
            ProbeEvidence("https://127.0.0.1:9/v2/", error="connection refused"),
            ProbeEvidence("http://127.0.0.1:9/v1/_ping", status=404, note="not a registry"),
        ),
    )
    assert _render(render_probe, result) == [
        "registry  127.0.0.1:9",
        "verdict   neither",
        "v2        no",
        "v1        no (HTTP 404)",
        "evidence:",
        "  https://127.0.0.1:9/v2/: error: connection refused",
        "  http://127.0.0.1:9/v1/_ping: HTTP 404 (not a registry)",
    ]


def test_pull_summary() -> None:
    result = PullResult(
        reference="127.0.0.1:5000/team/app:1.0",
        digest=D1,
        media_type="application/vnd.oci.image.manifest.v1+json",
        dest="app",
        format="oci",
        protocol="v2",
        platforms=("linux/amd64",),
        blobs_downloaded=3,
        blobs_skipped=1,
        bytes_downloaded=4 * 1024**2,
        seconds=2.0,
    )
    assert _render(render_pull, result) == [
        "pulled     127.0.0.1:5000/team/app:1.0 over v2",
        f"digest     {D1}",
        "to         app (oci)",
        "platforms  linux/amd64",
        "blobs      3 downloaded, 1 already present; 4.0 MiB in 2.00 s (2.0 MiB/s)",
    ]


def test_push_summary_says_when_layers_were_recompressed() -> None:
    result = PushResult(
        reference="127.0.0.1:5000/team/app:1.0",
        digest=D1,
        media_type="application/vnd.docker.distribution.manifest.v2+json",
        protocol="v2",
        blobs_uploaded=2,
        blobs_skipped=1,
        blobs_mounted=1,
        bytes_uploaded=2048,
        recompressed=True,
        seconds=0.0,
    )
    lines = _render(render_push, result)
    assert lines[:3] == [
        "pushed  127.0.0.1:5000/team/app:1.0 over v2",
        f"digest  {D1}",
        "blobs   2 uploaded, 1 mounted, 1 already present; 2.0 KiB",
    ]
    assert lines[3].startswith("note    the docker-archive's layers were gzip-compressed")


def test_inspect_shows_config_and_layers() -> None:
    result = InspectResult(
        reference="127.0.0.1:5000/team/app:1.0",
        digest=D1,
        media_type="application/vnd.oci.image.index.v1+json",
        platforms=("linux/amd64", "linux/arm64/v8"),
        platform="linux/amd64",
        manifest_digest=D2,
        config_digest=D3,
        layers=(
            LayerInfo(D2, 1024, "application/vnd.oci.image.layer.v1.tar+gzip"),
            LayerInfo(D3, 3 * 1024**2, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ),
        os="linux",
        architecture="amd64",
        entrypoint=("/bin/app", "--serve"),
        cmd=None,
        env=("PATH=/usr/bin", "A=[b]"),
        labels={"z": "1", "a": "2"},
    )
    assert _render(render_inspect, result) == [
        "reference   127.0.0.1:5000/team/app:1.0",
        f"digest      {D1}",
        "media type  application/vnd.oci.image.index.v1+json",
        "platforms   linux/amd64, linux/arm64/v8",
        "platform    linux/amd64",
        f"manifest    {D2}",
        f"config      {D3}",
        "os/arch     linux/amd64",
        "entrypoint  /bin/app --serve",
        "env         PATH=/usr/bin",
        "env         A=[b]",
        "label       a=2",
        "label       z=1",
        "size        3.0 MiB in 2 layers",
        "layers:",
        f"  {D2}  1.0 KiB  application/vnd.oci.image.layer.v1.tar+gzip",
        f"  {D3}  3.0 MiB  application/vnd.oci.image.layer.v1.tar+gzip",
    ]


def test_lines_are_printed_verbatim() -> None:
    assert _render(render_lines, ["1.0", "[red]latest[/]", "x" * 100]) == ["1.0", "[red]latest[/]", "x" * 100]


def test_nothing_transferred_has_no_rate() -> None:
    result = PushResult("r", D1, "m", "v2", blobs_skipped=2, bytes_uploaded=0, seconds=0.5)
    assert _render(render_push, result)[2] == "blobs   0 uploaded, 2 already present; 0 B"


def test_one_layer_is_singular() -> None:
    result = InspectResult("r", D1, "m", layers=(LayerInfo(D2, 10, "l"),))
    assert "size        10 B in 1 layer" in _render(render_inspect, result)
