"""``regtool catalog REGISTRY``: the repositories a registry lists in ``/v2/_catalog``, one per line."""

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
from regtool.reference import parse_registry

__all__ = ["catalog"]


@app.command()
def catalog(
    registry: Annotated[
        str, typer.Argument(metavar="REGISTRY", help="The registry's host[:port], e.g. localhost:5000.")
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
    """List the repositories of REGISTRY, one per line (following the registry's pagination).

    Example: regtool catalog localhost:5000
    """
    configure_logging(verbose)

    async def main() -> tuple[str, list[str]]:
        host = parse_registry(registry)
        connection = Connection.from_command_line()
        async with connection.client(retries=retries) as client:
            return host, await client.catalog(host, protocol=protocol.value)

    host, names = run(main, json_lines=json_output)
    if json_output:
        emit_json({"registry": host, "repositories": names})
    else:
        render_lines(stdout, names)
