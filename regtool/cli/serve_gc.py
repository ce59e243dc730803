"""``regtool serve gc``: remove what no tag reaches from a registry's storage (the server may be running)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from regtool.cli.app import RegtoolCommand
from regtool.cli.console import emit_json, fail, handle_errors, stdout
from regtool.cli.options import JsonOutput
from regtool.cli.serve import serve_app
from regtool.cli.storage_options import (
    DEFAULT_REGION,
    S3_OPTION_NAMES,
    S3BucketOption,
    S3EndpointOption,
    S3PathStyleOption,
    S3RegionOption,
    S3RootOption,
    s3_settings,
)
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
    "v1-image": ("v1 image", "v1 images"),
    "v1-repository": ("v1 repository", "v1 repositories"),
    "blob": ("blob", "blobs"),
    "upload": ("upload session", "upload sessions"),
    "v1-upload": ("v1 layer upload", "v1 layer uploads"),
}


@serve_app.command("gc", cls=RegtoolCommand)
def gc(
    ctx: typer.Context,
    config_argument: Annotated[
        Path | None,
        typer.Argument(
            metavar="[CONFIG]",
            help="The same as --config, placed as distribution's `registry garbage-collect CONFIG` takes it.",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="distribution's config.yml naming the storage (s3 too); flags given here override it.",
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Storage directory (default: the per-user data directory serve uses)."),
    ] = None,
    storage: Annotated[
        str, typer.Option("--storage", help="filesystem (under --root), or s3 (--s3-bucket, or as --config says).")
    ] = "filesystem",
    s3_endpoint: S3EndpointOption = None,
    s3_bucket: S3BucketOption = None,
    s3_region: S3RegionOption = DEFAULT_REGION,
    s3_root: S3RootOption = "",
    s3_path_style: S3PathStyleOption = False,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            metavar="HOST:PORT",
            help="The servers' descriptor cache, told what is removed (password from REGTOOL_REDIS_PASSWORD).",
        ),
    ] = None,
    # -d and -m are distribution's short names for the same two flags.
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-d", help="Say what would be removed; remove nothing.")
    ] = False,
    delete_untagged: Annotated[
        bool,
        typer.Option(
            "--delete-untagged", "-m", help="Remove untagged manifests too (kept by default, as distribution)."
        ),
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
    """Collect garbage: remove manifests, blobs, links, v1 images and upload sessions that no tag reaches."""
    from regtool.cli.serve_config import apply_config_file, given_flags
    from regtool.durations import parse_duration
    from regtool.errors import UsageError
    from regtool.server.app import make_driver
    from regtool.server.cache import open_cache
    from regtool.server.config import ServerConfig, default_root
    from regtool.server.gc import GcOptions, collect_garbage
    from regtool.server.storage.registry import Registry

    if storage not in ("filesystem", "s3"):
        fail(f"--storage must be filesystem or s3, not {storage!r}: gc collects stored registries", 2)
    if config_argument is not None:
        if config_file is not None:
            fail(
                f"two configuration files ({config_argument} and --config {config_file}): give one",
                2,
                json_lines=json_output,
            )
        config_file = config_argument
    try:
        grace = parse_duration(delay, what="--delay")
        given = given_flags(ctx)
        if storage == "s3" and root is not None:
            raise UsageError("--root is for filesystem storage: --storage s3 keeps the registry in the bucket")
        if storage == "s3" and config_file is None and s3_bucket is None:
            raise UsageError("--storage s3 needs --s3-bucket, or --config FILE naming the bucket")
        flags: dict[str, Any] = {"storage": storage, "root": None, "s3": None}
        if storage == "filesystem":
            flags["root"] = (root or default_root()).expanduser().resolve()
        # With --config, --storage s3 and no --s3-* options says only that the file's bucket is meant.
        files_bucket = storage == "s3" and config_file is not None and not given & S3_OPTION_NAMES
        if not files_bucket:
            flags["s3"] = s3_settings(storage, s3_endpoint, s3_bucket, s3_region, s3_root, s3_path_style)
        if redis is not None:
            flags.update(redis_addr=redis, redis_password=os.environ.get("REGTOOL_REDIS_PASSWORD") or None)
        given &= {"root", "redis", *S3_OPTION_NAMES, *(() if files_bucket else ("storage",))}
        fields = apply_config_file(config_file, flags, given)
        if storage == "s3" and fields.get("storage") != "s3":
            raise UsageError(f"--storage s3, but {config_file} names {fields.get('storage')} storage")
        fields["read_only"] = dry_run or bool(fields.get("read_only"))
        config = ServerConfig(**fields)
        if config.storage == "inmemory":
            raise UsageError(f"{config_file} names inmemory storage: nothing outlives its server to collect")
        if config.root is not None and not config.root.is_dir():
            raise UsageError(f"no registry storage at {config.root}")
        registry = Registry(make_driver(config), open_cache(config))
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
        emit_json(report.to_json())
    else:
        stdout.print(_summary(verb, report), markup=False, highlight=False)


def _line(verb: str, removal: Removal) -> str:
    noun = _NOUNS[removal.kind][0]
    where = f" from {removal.repository}" if removal.repository and removal.kind != "repository" else ""
    size = f" ({format_bytes(removal.size)})" if removal.kind in ("blob", "upload", "v1-upload") else ""
    return f"{verb} {noun} {removal.what}{where}{size}"


def _summary(verb: str, report: GcReport) -> str:
    counts = [f"{count} {_NOUNS[kind][0 if count == 1 else 1]}" for kind in _NOUNS if (count := report.count(kind))]
    freed = format_bytes(report.bytes_freed)
    if not counts:
        return "nothing to remove"
    return f"{verb} {', '.join(counts)}: {freed} {'would be ' if report.dry_run else ''}freed"
