"""Human output of the library's results (``--json`` prints their ``to_json()`` instead).

Each function writes to the console it is given (stdout in the commands); text from registries and users is
never read as rich markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from regtool.cli.units import format_bytes

if TYPE_CHECKING:
    from rich.console import Console

    from regtool.client.results import InspectResult, ProbeResult, PullResult, PushResult

__all__ = ["render_inspect", "render_lines", "render_probe", "render_pull", "render_push"]


def _print(console: Console, line: str = "") -> None:
    console.print(line, markup=False, highlight=False, emoji=False)


def _fields(console: Console, rows: Iterable[tuple[str, str]]) -> None:
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        _print(console, f"{name:<{width}}  {value}")


def _rate(nbytes: int, seconds: float) -> str:
    if seconds <= 0 or nbytes <= 0:
        return format_bytes(nbytes)
    return f"{format_bytes(nbytes)} in {seconds:.2f} s ({format_bytes(int(nbytes / seconds))}/s)"


def render_probe(console: Console, result: ProbeResult) -> None:
    """Which APIs answered, with the version headers and auth challenge; every probe's evidence if none did."""
    where = result.base_url or result.registry
    v2 = result.v2
    if v2.found:
        v2_text = f"yes ({v2.api_version or 'no version header'}, HTTP {v2.status})"
        if v2.auth_scheme:
            auth = f"; auth {v2.auth_scheme}"
            if v2.realm:
                auth += f" realm={v2.realm}"
            if v2.service:
                auth += f" service={v2.service}"
            v2_text += auth
    else:
        v2_text = "no" + (f" (HTTP {v2.status})" if v2.status is not None else "")
    v1 = result.v1
    if v1.found:
        standalone = "" if v1.standalone is None else f", standalone {str(v1.standalone).lower()}"
        v1_text = f"yes (version {v1.version or 'unknown'}{standalone})"
    else:
        v1_text = "no" + (f" (HTTP {v1.status})" if v1.status is not None else "")
    _fields(console, [("registry", where), ("verdict", result.verdict), ("v2", v2_text), ("v1", v1_text)])
    if not result.found and result.evidence:
        _print(console, "evidence:")
        for evidence in result.evidence:
            _print(console, f"  {evidence}")


def render_pull(console: Console, result: PullResult) -> None:
    """Where the image went and what was transferred."""
    blobs = f"{result.blobs_downloaded} downloaded"
    if result.blobs_skipped:
        blobs += f", {result.blobs_skipped} already present"
    rows = [
        ("pulled", f"{result.reference} over {result.protocol}"),
        ("digest", str(result.digest)),
        ("to", f"{result.dest} ({result.format})"),
    ]
    if result.platforms:
        rows.append(("platforms", ", ".join(result.platforms)))
    rows.append(("blobs", f"{blobs}; {_rate(result.bytes_downloaded, result.seconds)}"))
    _fields(console, rows)


def render_push(console: Console, result: PushResult) -> None:
    """What landed in the registry and what had to be sent."""
    parts = [f"{result.blobs_uploaded} uploaded"]
    if result.blobs_mounted:
        parts.append(f"{result.blobs_mounted} mounted")
    if result.blobs_skipped:
        parts.append(f"{result.blobs_skipped} already present")
    rows = [
        ("pushed", f"{result.reference} over {result.protocol}"),
        ("digest", str(result.digest)),
        ("blobs", f"{', '.join(parts)}; {_rate(result.bytes_uploaded, result.seconds)}"),
    ]
    if result.recompressed:
        rows.append(("note", "the docker-archive's layers were gzip-compressed (deterministically) for the push"))
    _fields(console, rows)


def render_inspect(console: Console, result: InspectResult) -> None:
    """Digest, media type, platforms of an index, config summary and the layers with their sizes."""
    rows = [("reference", result.reference), ("digest", str(result.digest)), ("media type", result.media_type)]
    if result.platforms:
        rows.append(("platforms", ", ".join(result.platforms)))
    if result.platform:
        rows.append(("platform", result.platform))
    if result.manifest_digest and result.manifest_digest != result.digest:
        rows.append(("manifest", str(result.manifest_digest)))
    if result.config_digest:
        rows.append(("config", str(result.config_digest)))
    os_arch = "/".join(p for p in (result.os, result.architecture, result.variant) if p)
    if os_arch:
        rows.append(("os/arch", os_arch))
    if result.created:
        rows.append(("created", result.created))
    if result.entrypoint is not None:
        rows.append(("entrypoint", " ".join(result.entrypoint)))
    if result.cmd is not None:
        rows.append(("cmd", " ".join(result.cmd)))
    rows += [("env", value) for value in result.env]
    rows += [("label", f"{key}={value}") for key, value in sorted(result.labels.items())]
    if result.layers:
        count = len(result.layers)
        rows.append(("size", f"{format_bytes(result.size)} in {count} layer{'' if count == 1 else 's'}"))
    _fields(console, rows)
    if result.layers:
        sizes = [format_bytes(layer.size) for layer in result.layers]
        width = max(len(size) for size in sizes)
        _print(console, "layers:")
        for layer, size in zip(result.layers, sizes, strict=True):
            _print(console, f"  {layer.digest}  {size:>{width}}  {layer.media_type}")


def render_lines(console: Console, lines: Iterable[str]) -> None:
    """One item per line (tags, repositories): easy to pipe into other tools."""
    for line in lines:
        _print(console, line)
