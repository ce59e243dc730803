"""``regtool catalog REGISTRY``: the repositories a registry lists in ``/v2/_catalog``, one per line."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, run, stdout
from regtool.cli.options import (
    CaCert,
    Connection,
    Insecure,
    JsonOutput,
    PasswordStdin,
    PlainHttp,
    Username,
    Verbose,
    configure_logging,
)
from regtool.cli.render import render_lines

__all__ = ["catalog"]


@app.command()
def catalog(
    registry: Annotated[
        str, typer.Argument(metavar="REGISTRY", help="The registry's host[:port], e.g. localhost:5000.")
    ],
    json_output: JsonOutput = False,
    verbose: Verbose = 0,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """List the repositories of REGISTRY, one per line (following the registry's pagination).

    Example: regtool catalog localhost:5000
    """
    configure_logging(verbose)

    async def main() -> list[str]:
        connection = Connection.from_options(
            plain_http=plain_http, insecure=insecure, ca_cert=ca_cert, username=username, password_stdin=password_stdin
        )
        async with connection.client() as client:
            return await client.catalog(registry)

    names = run(main, json_lines=json_output)
    if json_output:
        emit_json({"registry": registry, "repositories": names})
    else:
        render_lines(stdout, names)
