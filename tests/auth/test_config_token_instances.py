"""Two ``regtool serve --config`` processes with one config.yml (one store, one token key, one htpasswd), as
instances behind a balancer run: a token either issues is good at the other, and both announce the file's realm."""

from __future__ import annotations

from pathlib import Path

import httpx

from regtool.server.auth.jwt import SigningKey
from tests.auth.conftest import USERS
from tests.server.helpers import digest_of, random_blob
from tests.server.test_serve_config_cli import serve_with_config
from tests.support.distribution import free_port


def _token(url: str, scope: str) -> str:
    response = httpx.get(f"{url}/token", params={"service": "registry", "scope": scope}, auth=("alice", USERS["alice"]))
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_instances_sharing_a_config_file_accept_each_others_tokens(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    first_port, second_port = free_port(), free_port()
    realm = f"http://127.0.0.1:{first_port}/token"
    config = tmp_path / "config.yml"
    config.write_text(
        f"""\
version: 0.1
storage:
  filesystem:
    rootdirectory: {tmp_path / "shared-store"}
http:
  addr: 127.0.0.1:5000
  secret: shared
auth:
  token:
    realm: {realm}
    service: registry
    issuer: cluster
    rootcertbundle: {token_key[1]}
    signingkey: {token_key[0]}
    htpasswd: {htpasswd}
"""
    )
    with (
        serve_with_config(config, "--port", str(first_port), port=first_port) as (first, _),
        serve_with_config(config, "--port", str(second_port), port=second_port) as (second, _),
    ):
        challenge = httpx.get(f"{second}/v2/team/app/tags/list")
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"] == (
            f'Bearer realm="{realm}",service="registry",scope="repository:team/app:pull"'
        )
        # A token from the first instance pushes through the second.
        token = _token(first, "repository:team/app:pull,push")
        headers = {"Authorization": f"Bearer {token}"}
        blob = random_blob(50_000)
        started = httpx.post(f"{second}/v2/team/app/blobs/uploads/", headers=headers)
        assert started.status_code == 202, started.text
        closed = httpx.put(
            f"{second}{started.headers['location']}", params={"digest": digest_of(blob)}, content=blob, headers=headers
        )
        assert closed.status_code == 201, closed.text
        # A token from the second reads it back through the first: one store, one key.
        token = _token(second, "repository:team/app:pull")
        fetched = httpx.get(
            f"{first}/v2/team/app/blobs/{digest_of(blob)}", headers={"Authorization": f"Bearer {token}"}
        )
        assert fetched.status_code == 200
        assert fetched.content == blob
