"""``regtool copy SOURCE_IMAGE TARGET_IMAGE``: registry to registry, across registry v1 and v2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, run, stderr, stdout
from regtool.cli.options import (
    CaCert,
    Connection,
    Insecure,
    Jobs,
    JsonOutput,
    PasswordStdin,
    PlainHttp,
    PlatformOption,
    ProtocolChoice,
    Quiet,
    Username,
    Verbose,
    choose_platform,
    configure_logging,
)
from regtool.cli.units import format_bytes
from regtool.reference import Reference

if TYPE_CHECKING:
    from rich.console import Console

    from regtool.client.copy import CopyResult

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
    rows.append(("blobs", f"{moved}; {format_bytes(result.bytes_copied)} in {result.seconds:.2f} s"))
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
    jobs: Jobs = 8,
    json_output: JsonOutput = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Copy an image from one registry to another, streaming each blob through, verified.

    Works across protocols: v1 -> v2 migrates an old registry (config and diff_ids rebuilt from the v1 chain),
    v2 -> v1 feeds one (v1 ids derived from the config). No local copy of the image is made.

    Example: regtool copy old.example:5000/team/app:1.0 localhost:5000/team/app:1.0
    """
    from regtool.cli.progress import open_progress  # here: rich.progress and the client load per command

    configure_logging(verbose)
    with open_progress(json_lines=json_output, quiet=quiet, console=stderr, verbose=verbose) as progress:

        async def main() -> CopyResult:
            source = Reference.parse(source_image)
            target = Reference.parse(target_image)
            wanted = choose_platform(platform, False)
            connection = Connection.from_options(
                plain_http=plain_http,
                insecure=insecure,
                ca_cert=ca_cert,
                username=username,
                password_stdin=password_stdin,
            )
            async with connection.client(progress=progress, jobs=jobs) as client:
                return await client.copy(
                    source,
                    target,
                    source_protocol=from_protocol.value,
                    target_protocol=to_protocol.value,
                    platform=wanted,
                )

        result = run(main, json_lines=json_output)
    if json_output:
        emit_json(result.to_json())
    else:
        render_copy(stdout, result)
