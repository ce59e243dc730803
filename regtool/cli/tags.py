"""``regtool tags REPOSITORY``: the repository's tags, one per line, following the registry's pagination."""

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
    MirrorOption,
    PasswordStdin,
    PlainHttp,
    ProtocolChoice,
    ProtocolOption,
    RegistriesConfFile,
    Retries,
    Timeout,
    Username,
    Verbose,
    configure_logging,
)
from regtool.cli.render import render_lines
from regtool.reference import Reference

__all__ = ["tags"]


@app.command()
def tags(
    repository: Annotated[
        str,
        typer.Argument(metavar="REPOSITORY", help="[host[:port]/]path without tag, e.g. localhost:5000/team/app."),
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
    registries_conf: RegistriesConfFile = None,
    mirror: MirrorOption = None,
) -> None:
    """List the tags of REPOSITORY, one per line (following the registry's pagination).

    Example: regtool tags localhost:5000/team/app
    """
    configure_logging(verbose)

    async def main() -> tuple[Reference, list[str]]:
        ref = Reference.parse_repository(repository)
        connection = Connection.from_command_line()
        async with connection.client(retries=retries) as client:
            return ref, await client.tags(ref, protocol=protocol.value)

    ref, names = run(main, json_lines=json_output)
    if json_output:
        emit_json({"repository": ref.repository_ref, "tags": names})
    else:
        render_lines(stdout, names)
