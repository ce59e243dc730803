"""``regtool serve gc``: remove what no tag reaches from a registry's storage (the server may be running)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import RegtoolCommand
from regtool.cli.console import emit_json, fail, handle_errors, stdout
from regtool.cli.options import JsonOutput
from regtool.cli.serve import serve_app
from regtool.cli.units import format_bytes

if TYPE_CHECKING:
    from regtool.server.gc import GcReport, Removal
    from regtool.server.gc.report import RemovalKind

__all__ = ["gc"]

_NOUNS: dict[RemovalKind, tuple[str, str]] = {
    "manifest": ("manifest", "manifests"),
    "referrer-entry": ("referrers entry", "referrers entries"),
    "link": ("repository link", "repository links"),
    "repository": ("repository", "repositories"),
    "blob": ("blob", "blobs"),
    "upload": ("upload session", "upload sessions"),
}


@serve_app.command("gc", cls=RegtoolCommand)
def gc(
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Storage directory (default: the per-user data directory serve uses)."),
    ] = None,
    storage: Annotated[str, typer.Option("--storage", help="filesystem (under --root).")] = "filesystem",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    delete_untagged: Annotated[
        bool,
        typer.Option("--delete-untagged", help="Remove untagged manifests too (kept by default, as distribution)."),
    ] = False,
    delay: Annotated[
        str,
        typer.Option(
            "--delay",
            metavar="DURATION",
            help="Grace period: keep anything written more recently than this (e.g. 1h, 30m, 0).",
        ),
    ] = "1h",
    json_output: JsonOutput = False,
) -> None:
    """Collect garbage: remove manifests, blobs, links and upload sessions that no tag reaches."""
    from regtool.durations import parse_duration
    from regtool.errors import UsageError
    from regtool.server.app import make_driver
    from regtool.server.config import ServerConfig, default_root
    from regtool.server.gc import GcOptions, collect_garbage
    from regtool.server.storage.registry import Registry

    if storage != "filesystem":
        fail(f"--storage {storage!r} cannot be collected: gc works on stored registries (filesystem)", 2)
    try:
        grace = parse_duration(delay, what="--delay")
        data_root = (root or default_root()).expanduser().resolve()
        if not data_root.is_dir():
            raise UsageError(f"no registry storage at {data_root} (--root)")
        config = ServerConfig(root=data_root, storage="filesystem", read_only=dry_run)
        registry = Registry(make_driver(config))
    except UsageError as exc:
        fail(str(exc), 2, json_lines=json_output)
    options = GcOptions(delete_untagged=delete_untagged, delay=grace, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"

    def say(removal: Removal) -> None:
        if not json_output:
            stdout.print(_line(verb, removal), markup=False, highlight=False)

    with handle_errors(json_lines=json_output):
        report = collect_garbage(registry, options, on_removed=say)
    if json_output:
        emit_json({"root": str(data_root), **report.to_json()})
    else:
        stdout.print(_summary(verb, report), markup=False, highlight=False)


def _line(verb: str, removal: Removal) -> str:
    noun = _NOUNS[removal.kind][0]
    where = f" from {removal.repository}" if removal.repository and removal.kind != "repository" else ""
    size = f" ({format_bytes(removal.size)})" if removal.kind in ("blob", "upload") else ""
    return f"{verb} {noun} {removal.what}{where}{size}"


def _summary(verb: str, report: GcReport) -> str:
    counts = [f"{count} {_NOUNS[kind][0 if count == 1 else 1]}" for kind in _NOUNS if (count := report.count(kind))]
    freed = format_bytes(report.bytes_freed)
    if not counts:
        return "nothing to remove"
    return f"{verb} {', '.join(counts)}: {freed} {'would be ' if report.dry_run else ''}freed"
