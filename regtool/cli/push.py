"""``regtool push SOURCE IMAGE``: upload an OCI layout or a docker-archive to a registry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, run, stderr, stdout
from regtool.cli.options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    CaCert,
    ChunkSize,
    Connection,
    ConnectTimeout,
    Insecure,
    Jobs,
    JsonOutput,
    PasswordStdin,
    PlainHttp,
    ProtocolChoice,
    ProtocolOption,
    Quiet,
    Retries,
    TimelineFile,
    Timeout,
    Username,
    Verbose,
    configure_logging,
    timeline_recording,
)
from regtool.cli.render import render_push
from regtool.errors import UsageError
from regtool.reference import Reference

if TYPE_CHECKING:
    from regtool.client.results import PushResult

__all__ = ["parse_chunk_size", "parse_size", "push"]

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``"8MiB"``, ``"8M"``, ``"512k"``, ``"1048576"`` -> bytes (binary units); UsageError otherwise."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise UsageError(f"invalid size {text!r}: expected a number of bytes, optionally with K, M or G (MiB...)")
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    size = number * _UNITS[unit[:1]]
    if size <= 0:
        raise UsageError(f"invalid size {text!r}: must be more than 0 bytes")
    return size


def parse_chunk_size(text: str) -> int:
    """``--chunk-size``: a size (see :func:`parse_size`) of at least ``regtool.client.v2.push.MIN_CHUNK_SIZE``."""
    from regtool.client.v2.push import MIN_CHUNK_SIZE

    size = parse_size(text)
    if size < MIN_CHUNK_SIZE:
        raise UsageError(f"--chunk-size {text}: must be at least {MIN_CHUNK_SIZE >> 10}KiB ({MIN_CHUNK_SIZE} bytes)")
    return size


@app.command()
def push(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="An OCI layout directory (DIR or DIR:TAG for one of its tagged images) or a docker-archive .tar.",
        ),
    ],
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="Where to push: [host[:port]/]path[:tag].")],
    mount_from: Annotated[
        list[str] | None,
        typer.Option(
            "--mount-from",
            metavar="REPOSITORY",
            help="Another repository of the same registry to mount blobs from instead of uploading (repeatable).",
        ),
    ] = None,
    chunk_size: ChunkSize = None,
    protocol: ProtocolOption = ProtocolChoice.auto,
    jobs: Jobs = 8,
    retries: Retries = 3,
    json_output: JsonOutput = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    timeline: TimelineFile = None,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Upload an OCI layout or a docker-archive to IMAGE, keeping its digests.

    Blobs the registry already has are skipped, the others go up concurrently (--jobs), manifests last. A
    docker-archive's uncompressed layers are gzip-compressed deterministically first, and the result says so.

    Example: regtool push ./app:1.0 localhost:5000/team/app:1.0
    """
    from regtool.cli.progress import open_progress  # here: rich.progress and the client load per command

    configure_logging(verbose)
    with (
        open_progress(json_lines=json_output, quiet=quiet, console=stderr, verbose=verbose) as shown,
        timeline_recording(timeline, shown, title=f"regtool push {source} {image}", json_lines=json_output) as progress,
    ):

        async def main() -> PushResult:
            ref = Reference.parse(image)
            chunk = None if chunk_size is None else parse_chunk_size(chunk_size)
            connection = Connection.from_command_line()
            async with connection.client(progress=progress, jobs=jobs, retries=retries) as client:
                return await client.push(
                    str(source), ref, protocol=protocol.value, mount_from=tuple(mount_from or ()), chunk_size=chunk
                )

        # The library ends with a "summary" progress event (a JSON line under --json).
        result = run(main, json_lines=json_output)
    if json_output:
        emit_json(result.to_json())
    else:
        render_push(stdout, result)
