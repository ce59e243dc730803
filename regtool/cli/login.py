"""``regtool login REGISTRY`` and ``regtool logout REGISTRY``: docker-compatible stored credentials.

``login`` checks the credentials against the registry, then stores them where docker would: through the
credential helper docker's config.json names for the registry (``credHelpers``/``credsStore``), else in its
``auths`` (the file is written atomically, mode 0600). ``logout`` removes them from the same places.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import sys
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
    Timeout,
    Username,
    Verbose,
    configure_logging,
)
from regtool.errors import UsageError

__all__ = ["login", "logout"]

RegistryArgument = Annotated[
    str, typer.Argument(metavar="REGISTRY", help="The registry's host[:port], e.g. localhost:5000 or docker.io.")
]


def _interactive_credentials(username: str | None) -> tuple[str, str]:
    if not sys.stdin.isatty():
        raise UsageError("login needs credentials: -u USER with --password-stdin, or REGTOOL_USERNAME/REGTOOL_PASSWORD")
    user = username or input("Username: ").strip()
    if not user:
        raise UsageError("login needs a username")
    password = getpass.getpass("Password: ")
    if not password:
        raise UsageError("login needs a password")
    return user, password


@app.command()
def login(
    registry: RegistryArgument,
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
    """Check credentials against REGISTRY and store them the way docker does (config.json or its helper).

    The password comes from --password-stdin or REGTOOL_PASSWORD (or a prompt on a terminal), never an option.

    Example: printf '%s\\n' "$TOKEN" | regtool login -u ci --password-stdin registry.example:5000
    """
    from regtool.client.login import normalise_registry, verify_login
    from regtool.client.net.credentials import Credentials, DockerConfig

    configure_logging(verbose)
    host = ""

    async def main() -> str:
        nonlocal host
        host = normalise_registry(registry)
        # Without --password-stdin or REGTOOL_PASSWORD the password is asked for on a terminal, as docker does.
        prompt = not password_stdin and "REGTOOL_PASSWORD" not in os.environ
        connection = Connection.from_options(
            plain_http=plain_http,
            insecure=insecure,
            ca_cert=ca_cert,
            username=None if prompt else username,
            password_stdin=password_stdin,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        if connection.username is None or connection.password is None:
            user, password = _interactive_credentials(username)
            connection = dataclasses.replace(connection, username=user, password=password)
        assert connection.username is not None and connection.password is not None
        async with connection.client() as client:
            await verify_login(client.api, host)
        creds = Credentials(connection.username, connection.password, "login")
        return DockerConfig().store(host, creds)

    where = run(main, json_lines=json_output)
    if json_output:
        emit_json({"registry": host, "stored_in": where})
    else:
        stdout.print(f"Login Succeeded: credentials for {host} stored in {where}", markup=False, highlight=False)


@app.command()
def logout(
    registry: RegistryArgument,
    json_output: JsonOutput = False,
) -> None:
    """Remove the stored credentials of REGISTRY (from docker's config.json or its credential helper).

    Example: regtool logout localhost:5000
    """
    from regtool.client.login import normalise_registry
    from regtool.client.net.credentials import DockerConfig

    host = ""

    async def main() -> bool:
        nonlocal host
        host = normalise_registry(registry)
        return DockerConfig().erase(host)

    removed = run(main, json_lines=json_output)
    if json_output:
        emit_json({"registry": host, "removed": removed})
    elif removed:
        stdout.print(f"Removed login credentials for {host}", markup=False, highlight=False)
    else:
        stdout.print(f"Not logged in to {host}", markup=False, highlight=False)
