"""``regtool probe REGISTRY``: which registry APIs answer there (v2, v1, both or neither), with the evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, fail, run, stdout
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
    Timeout,
    Username,
    Verbose,
    configure_logging,
)
from regtool.cli.render import render_probe
from regtool.reference import parse_registry

if TYPE_CHECKING:
    from regtool.client.results import ProbeResult

__all__ = ["probe"]


@app.command()
def probe(
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
    timeout: Timeout = DEFAULT_TIMEOUT,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Report which registry APIs (v2, v1, both or neither) answer at REGISTRY.

    Shows v2's version header and auth challenge and v1's version and standalone flag; when neither answers, what
    each probe saw, and the exit code is 7. HTTPS first; plain HTTP only for loopback or with --plain-http.

    Example: regtool probe localhost:5000
    """
    configure_logging(verbose)

    async def main() -> ProbeResult:
        host = parse_registry(registry)
        connection = Connection.from_command_line()
        async with connection.client() as client:
            return await client.probe(host)

    result = run(main, json_lines=json_output)
    if json_output:
        emit_json(result.to_json())
    else:
        render_probe(stdout, result)
    if not result.found:
        message = f"no registry API (v1 or v2) answered at {result.registry}"
        if result.scheme is None and result.evidence:
            # Nothing answered over HTTP at all: the line says why (refused, timed out, TLS), not only stdout.
            message += f" ({'; '.join(str(evidence) for evidence in result.evidence)})"
        fail(message, 7, json_lines=json_output)
