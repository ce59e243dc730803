"""``docker login`` against ``regtool serve --token-auth``, then push and pull as the signed-in user."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.reference import Reference
from tests.auth.support import write_htpasswd
from tests.support.dockerd import Dockerd
from tests.support.images import write_image
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.interop


@pytest.fixture
def token_serve(tmp_path: Path) -> Iterator[RunningServe]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    acl = tmp_path / "acl"
    acl.write_text("alice * pull,push,delete\n")
    with run_serve(tmp_path / "registry", htpasswd=htpasswd, token_auth=True, auth_acl=acl) as server:
        yield server


def test_login_then_push_and_pull(dockerd: Dockerd, token_serve: RunningServe, tmp_path: Path) -> None:
    image = write_image(tmp_path / "src", "1", [{"etc/motd": b"signed in\n"}], docker=True)
    name = f"{token_serve.host}/alice/app:1"

    async def push() -> None:
        async with Client(username="alice", password="wonderland", use_docker_config=False) as client:
            await client.push(f"{tmp_path / 'src'}:1", Reference.parse(name))

    anyio.run(push)
    denied = dockerd.docker("pull", name, check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "denied" in denied.stderr.lower()

    wrong = dockerd.docker("login", token_serve.host, "-u", "alice", "--password-stdin", input="nope\n", check=False)
    assert wrong.returncode != 0
    done = dockerd.docker("login", token_serve.host, "-u", "alice", "--password-stdin", input="wonderland\n")
    assert "Login Succeeded" in done.stdout
    saved = json.loads((dockerd.config_dir / "config.json").read_text())
    # serve answered docker's OAuth2 login with a refresh token: docker keeps that identity token, not the password.
    entry = saved["auths"][token_serve.host]
    assert entry["identitytoken"]
    assert base64.b64decode(entry["auth"]) == b"alice:"

    dockerd.docker("pull", name)
    info = dockerd.inspect_image(name)
    assert info["Id"] == str(image.config_digest)
    pushed = f"{token_serve.host}/alice/copy:1"
    dockerd.docker("tag", name, pushed)
    dockerd.docker("push", pushed)

    async def inspect() -> str:
        async with Client(username="alice", password="wonderland", use_docker_config=False) as client:
            got = await client.inspect(Reference.parse(pushed))
        return str(got.config_digest)

    assert anyio.run(inspect) == str(image.config_digest)
    dockerd.docker("logout", token_serve.host)
    dockerd.docker("rmi", name, pushed)
    assert dockerd.docker("pull", name, check=False).returncode != 0
