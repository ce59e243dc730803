"""``regtool inspect IMAGE``: what a registry holds under a reference, without downloading the layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_bytes, emit_json, run, stdout
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
    PlatformOption,
    ProtocolChoice,
    ProtocolOption,
    RegistriesConfFile,
    Retries,
    Timeout,
    Username,
    Verbose,
    configure_logging,
)
from regtool.cli.render import render_inspect
from regtool.platform import parse_platform
from regtool.reference import Reference

if TYPE_CHECKING:
    from regtool.client.results import InspectResult

__all__ = ["inspect"]


@app.command()
def inspect(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="[host[:port]/]path[:tag]\\[@digest].")],
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the manifest's bytes exactly as the registry sent them.")
    ] = False,
    platform: PlatformOption = None,
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
    """Show what the registry holds for IMAGE, without downloading layers.

    The resolved digest and media type, an index's platforms, the layers with their sizes, and the config's
    os/arch, entrypoint, cmd, env and labels. With --raw, the manifest's bytes and nothing else.

    Example: regtool inspect localhost:5000/team/app:1.0 --platform linux/arm64
    """
    configure_logging(verbose)

    async def main() -> InspectResult | bytes:
        ref = Reference.parse(image)
        wanted = None if platform is None else parse_platform(platform)
        connection = Connection.from_command_line()
        async with connection.client(retries=retries) as client:
            if raw:
                return await client.manifest_bytes(ref, protocol=protocol.value)
            return await client.inspect(ref, platform=wanted, protocol=protocol.value)

    result = run(main, json_lines=json_output)
    if isinstance(result, bytes):
        emit_bytes(result)
    elif json_output:
        emit_json(result.to_json())
    else:
        render_inspect(stdout, result)
