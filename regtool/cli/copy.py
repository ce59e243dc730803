"""``regtool copy SOURCE_IMAGE TARGET_IMAGE``: registry to registry, across registry v1 and v2."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, run, stderr, stdout, warn
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
    MirrorOption,
    PasswordStdin,
    PlainHttp,
    PlatformOption,
    ProtocolChoice,
    Quiet,
    RegistriesConfFile,
    Retries,
    TimelineFile,
    Timeout,
    Username,
    Verbose,
    choose_platform,
    configure_logging,
    timeline_recording,
)
from regtool.cli.push import parse_chunk_size
from regtool.cli.units import format_bytes
from regtool.errors import UsageError
from regtool.reference import Reference

if TYPE_CHECKING:
    from rich.console import Console

    from regtool.client.net.credentials import Credentials
    from regtool.client.v2.copy import CopyResult

__all__ = ["copy", "render_copy"]

FromProtocol = Annotated[
    ProtocolChoice,
    typer.Option(
        "--from-protocol",
        case_sensitive=False,
        help="API to read SOURCE_IMAGE with: auto probes (v2 when the registry has it, else v1).",
    ),
]
ToProtocol = Annotated[
    ProtocolChoice,
    typer.Option(
        "--to-protocol",
        case_sensitive=False,
        help="API to write TARGET_IMAGE with: auto probes (v2 when the registry has it, else v1).",
    ),
]
MountFrom = Annotated[
    list[str] | None,
    typer.Option(
        "--mount-from",
        metavar="REPOSITORY",
        help="A repository of the target's registry to mount blobs from instead of uploading them (repeatable); "
        "on one registry, SOURCE_IMAGE's repository is tried anyway.",
    ),
]
CopyReferrers = Annotated[
    bool,
    typer.Option(
        "--referrers",
        help="Also copy what refers to the image (signatures, SBOMs, attestations; recursively): the OCI referrers "
        "API, the sha256-<hex> tag schema, cosign's tags (registry v2 at both ends).",
    ),
]

_NET = "Connection"
SrcUsername = Annotated[
    str | None,
    typer.Option(
        "--src-username",
        metavar="USER",
        envvar="REGTOOL_SRC_USERNAME",
        help="Username for SOURCE_IMAGE's registry (instead of -u); the password comes from --src-password-stdin "
        "or REGTOOL_SRC_PASSWORD.",
        rich_help_panel=_NET,
    ),
]
SrcPasswordStdin = Annotated[
    bool,
    typer.Option(
        "--src-password-stdin",
        help="Read the password of --src-username from the first line of standard input.",
        rich_help_panel=_NET,
    ),
]
DestUsername = Annotated[
    str | None,
    typer.Option(
        "--dest-username",
        metavar="USER",
        envvar="REGTOOL_DEST_USERNAME",
        help="Username for TARGET_IMAGE's registry (instead of -u); the password comes from --dest-password-stdin "
        "or REGTOOL_DEST_PASSWORD.",
        rich_help_panel=_NET,
    ),
]
DestPasswordStdin = Annotated[
    bool,
    typer.Option(
        "--dest-password-stdin",
        help="Read the password of --dest-username from the first line of standard input.",
        rich_help_panel=_NET,
    ),
]


def _end_credentials(end: str, username: str | None, password_stdin: bool) -> Credentials | None:
    """The credentials of ``--{end}-username`` with ``--{end}-password-stdin`` or ``REGTOOL_{END}_PASSWORD``."""
    from regtool.cli.options import _read_password_stdin  # the one reader of a password on stdin
    from regtool.client.net.credentials import Credentials

    variable = f"REGTOOL_{end.upper()}_PASSWORD"
    password: str | None = None
    if password_stdin:
        password = _read_password_stdin()
    elif variable in os.environ:
        password = os.environ[variable]
    if password is not None and not username:
        raise UsageError(f"a password for the {end} registry was given without --{end}-username")
    if username and password is None:
        raise UsageError(f"no password for user {username!r}: use --{end}-password-stdin or set {variable}")
    return Credentials(username, password) if username and password is not None else None


def render_copy(console: Console, result: CopyResult) -> None:
    """What went where, over which protocols, and what had to be sent."""
    rows = [
        ("copied", f"{result.source} ({result.source_protocol})"),
        ("to", f"{result.target} ({result.target_protocol})"),
    ]
    if result.digest is not None:
        rows.append(("digest", str(result.digest)))
    if result.image_id is not None:
        rows.append(("v1 image", result.image_id))
    moved = f"{result.blobs_copied} copied"
    if result.blobs_skipped:
        moved += f", {result.blobs_skipped} already present"
    if result.blobs_mounted:
        moved += f", {result.blobs_mounted} mounted"
    rows.append(("blobs", f"{moved}; {format_bytes(result.bytes_copied)} in {result.seconds:.2f} s"))
    if result.referrers is not None:
        rows.append(("referrers", f"{result.referrers} copied"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        console.print(f"{name:<{width}}  {value}", markup=False, highlight=False)


@app.command()
def copy(
    source_image: Annotated[str, typer.Argument(metavar="SOURCE_IMAGE", help="[host[:port]/]path[:tag]\\[@digest].")],
    target_image: Annotated[str, typer.Argument(metavar="TARGET_IMAGE", help="[host[:port]/]path[:tag].")],
    from_protocol: FromProtocol = ProtocolChoice.auto,
    to_protocol: ToProtocol = ProtocolChoice.auto,
    platform: PlatformOption = None,
    mount_from: MountFrom = None,
    referrers: CopyReferrers = False,
    chunk_size: ChunkSize = None,
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
    src_username: SrcUsername = None,
    src_password_stdin: SrcPasswordStdin = False,
    dest_username: DestUsername = None,
    dest_password_stdin: DestPasswordStdin = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    registries_conf: RegistriesConfFile = None,
    mirror: MirrorOption = None,
) -> None:
    """Copy an image from one registry to another, streaming each blob through, verified.

    Works across protocols: v1 -> v2 migrates an old registry (config and diff_ids rebuilt from the v1 chain),
    v2 -> v1 feeds one (v1 ids derived from the config). No local copy of the image is made. With --platform,
    only that platform's image of an index is copied. Blobs the target has are skipped; on one registry they are
    mounted. An interrupted copy to a v2 registry resumes its unfinished uploads when run again.

    Example: regtool copy old.example:5000/team/app:1.0 localhost:5000/team/app:1.0
    """
    from regtool.cli.progress import open_progress  # here: rich.progress and the client load per command

    configure_logging(verbose)
    with (
        open_progress(json_lines=json_output, quiet=quiet, console=stderr, verbose=verbose) as shown,
        timeline_recording(
            timeline, shown, title=f"regtool copy {source_image} {target_image}", json_lines=json_output
        ) as progress,
    ):

        async def main() -> CopyResult:
            source = Reference.parse(source_image)
            target = Reference.parse(target_image)
            wanted = choose_platform(platform, False)
            chunk = None if chunk_size is None else parse_chunk_size(chunk_size)
            if sum((password_stdin, src_password_stdin, dest_password_stdin)) > 1:
                raise UsageError(
                    "standard input holds one password: give only one of --password-stdin, --src-password-stdin "
                    "and --dest-password-stdin"
                )
            source_credentials = _end_credentials("src", src_username, src_password_stdin)
            target_credentials = _end_credentials("dest", dest_username, dest_password_stdin)
            connection = Connection.from_command_line()
            if referrers and ProtocolChoice.v1 in (from_protocol, to_protocol):
                raise UsageError("--referrers needs registry v2 at both ends, not --from/--to-protocol v1")
            async with connection.client(progress=progress, jobs=jobs, retries=retries) as client:
                copied = await client.copy(
                    source,
                    target,
                    source_protocol=from_protocol.value,
                    target_protocol=to_protocol.value,
                    platform=wanted,
                    mount_from=tuple(mount_from or ()),
                    chunk_size=chunk,
                    source_credentials=source_credentials,
                    target_credentials=target_credentials,
                )
                if not referrers:
                    return copied
                if copied.digest is None or "v1" in (copied.source_protocol, copied.target_protocol):
                    warn("--referrers: registry v1 has no referrers; none copied")
                    return copied
                from regtool.client.v2.referrers import copy_referrers

                carried = await copy_referrers(client.api, source, target, copied.digest, progress=progress, jobs=jobs)
                return dataclasses.replace(copied, referrers=sum(1 for c in carried if c.result is not None))

        result = run(main, json_lines=json_output)
    if json_output:
        emit_json(result.to_json())
    else:
        render_copy(stdout, result)
