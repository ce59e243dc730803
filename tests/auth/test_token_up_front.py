"""A host known to want a token gets one before a request goes: an upload's body never goes out unauthenticated
to be refused (after a cross-repository mount that answered with a session, or once the push token expired). A
registry on Go's net/http answers such a request 401 without reading its body and resets the connection, so the
401 is never seen and the push fails."""

from __future__ import annotations

from pathlib import Path

import anyio

from regtool.client import Client
from regtool.reference import Reference
from regtool.server.auth.jwt import SigningKey
from tests.auth.conftest import USERS
from tests.auth.support import run_auth_serve
from tests.support.images import write_random_image


def test_uploads_after_a_mount_that_opened_a_session_carry_a_token(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    write_random_image(tmp_path / "img", "v1", count=2, size=256 << 10)
    with run_auth_serve(
        tmp_path / "registry", htpasswd=htpasswd, token_auth=True, token_key=token_key[0], token_cert=token_key[1]
    ) as server:

        async def push() -> None:
            async with Client(username="alice", password=USERS["alice"]) as client:
                target = Reference.parse(f"{server.host}/team/app:v1")
                await client.push(f"{tmp_path / 'img'}:v1", target, mount_from=("team/other",))

        server.requests.clear()
        anyio.run(push)
        refused = [(e.method, e.path) for e in server.requests.events() if e.status == 401 and e.path != "/v2/"]
        uploads = [e for e in server.requests.events() if "/blobs/uploads/" in e.path and e.method in ("PUT", "PATCH")]
    assert uploads, "the blobs went up through the sessions the mounts opened"
    # Only the first requests, sent before the client knew the registry wants tokens, are refused.
    assert refused and all(method == "HEAD" for method, _ in refused), refused
