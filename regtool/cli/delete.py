"""``regtool delete IMAGE``: delete a manifest (by tag, resolved to its digest, or by digest)."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, run, stdout
from regtool.cli.options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    CaCert,
    Connection,
    ConnectTimeout,
    Insecure,
    JsonOutput,
    PasswordStdin,
    PlainHttp,
    ProtocolChoice,
    ProtocolOption,
    Retries,
    Timeout,
    Username,
    Verbose,
    configure_logging,
)
from regtool.cli.render import render_lines
from regtool.digest import Digest
from regtool.reference import Reference

__all__ = ["delete"]


@app.command()
def delete(
    image: Annotated[
        str, typer.Argument(metavar="IMAGE", help="[host[:port]/]path[:tag]\\[@digest] of the manifest to delete.")
    ],
    protocol: ProtocolOption = ProtocolChoice.auto,
    retries: Retries = 3,
    json_output: JsonOutput = False,
    verbose: Verbose = 0,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Delete the manifest IMAGE names (by tag or digest) from its registry.

    A tag is resolved to its digest first, and the manifest is deleted by digest, so every tag pointing at it
    goes too. Prints the deleted digest. A registry with deletes turned off answers UNSUPPORTED: exit 7.

    Example: regtool delete localhost:5000/team/app:1.0
    """
    configure_logging(verbose)

    async def main() -> tuple[Reference, Digest]:
        ref = Reference.parse(image)
        connection = Connection.from_command_line()
        async with connection.client(retries=retries) as client:
            return ref, await client.delete(ref, protocol=protocol.value)

    ref, digest = run(main, json_lines=json_output)
    if json_output:
        emit_json({"reference": str(ref), "deleted": str(digest)})
    else:
        render_lines(stdout, [f"deleted {ref.repository_ref}@{digest}"])
