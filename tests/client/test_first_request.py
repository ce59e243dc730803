"""No ``GET /v2/`` ping before the first real request: the manifest or tags request itself shows the v2 API and
settles the scheme (one round trip less); an answer that shows no v2 API leaves the decision to the probe, as before.

Against the real serve (plain HTTP on loopback: https is tried at once and loses) and the scriptable fake registry
for a ping that a real server would answer differently from its repositories; with token auth in
tests/auth/test_client_auth.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.errors import UnsupportedProtocolError
from regtool.reference import Reference
from tests.client.fakeregistry import V2_HEADER, Reply, fake_registry
from tests.support.images import BuiltImage, assert_layout_holds, write_image
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.anyio


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "1.0", [{"etc/motd": b"no ping"}, {"bin/app": b"\x7fELF" + bytes(5000)}])


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[RunningServe, BuiltImage]]:
    image = _image(tmp_path)
    with run_serve() as server:
        yield server, image


async def _push(server_host: str, tmp_path: Path, **client: object) -> Reference:
    ref = Reference.parse(f"{server_host}/team/app:1.0")
    async with Client(**client) as c:  # type: ignore[arg-type]
        await c.push(f"{tmp_path / 'src'}:1.0", ref)
    return ref


async def test_pull_inspect_tags_send_no_ping(seeded: tuple[RunningServe, BuiltImage], tmp_path: Path) -> None:
    server, image = seeded
    ref = await _push(server.host, tmp_path)
    server.requests.clear()
    async with Client() as client:
        pulled = await client.pull(ref, tmp_path / "out")
        inspected = await client.inspect(ref)
        tags = await client.tags(Reference.parse_repository(f"{server.host}/team/app"))
    assert pulled.protocol == "v2" and pulled.digest == image.manifest.digest
    assert_layout_holds(tmp_path / "out", image)
    assert inspected.digest == image.manifest.digest and tags == ["1.0"]
    events = server.requests.take()
    assert (events[0].method, events[0].path) == ("GET", "/v2/team/app/manifests/1.0")
    assert not [e for e in events if e.path in {"/v2/", "/v1/_ping"}], [(e.method, e.path) for e in events]


async def test_one_shot_commands_make_only_their_own_requests(
    seeded: tuple[RunningServe, BuiltImage], tmp_path: Path
) -> None:
    server, image = seeded
    ref = await _push(server.host, tmp_path)
    server.requests.clear()
    async with Client() as client:
        assert (await client.manifest_bytes(ref)) == image.manifest.raw
    async with Client() as client:
        assert await client.tags(Reference.parse_repository(f"{server.host}/team/app")) == ["1.0"]
    async with Client() as client:
        assert (await client.delete(ref)) == image.manifest.digest
    seen = [(e.method, e.path, e.status) for e in server.requests.take()]
    manifest = "/v2/team/app/manifests/1.0"
    assert seen == [
        ("GET", manifest, 200),
        ("GET", "/v2/team/app/tags/list", 200),
        # One GET resolves the tag and shows whether the manifest is a referrer (it has no subject here).
        ("GET", manifest, 200),
        ("DELETE", f"/v2/team/app/manifests/{image.manifest.digest}", 202),
    ]


async def test_public_repository_behind_a_401_ping() -> None:
    with fake_registry() as fake:
        challenge = f'Bearer realm="{fake.url}/token",service="fake"'
        fake.route("GET", "/v2/", Reply(401, {**V2_HEADER, "WWW-Authenticate": challenge}, b""))
        fake.route("GET", "/v2/team/app/tags/list", Reply(200, {}, b'{"name":"team/app","tags":["a","b"]}'))
        async with Client(use_docker_config=False) as client:
            assert await client.tags(Reference.parse_repository(f"{fake.host}/team/app")) == ["a", "b"]
        # No ping, and so no token for it: the repository answered as it is.
        assert [(method, path) for method, path, _ in fake.requests] == [("GET", "/v2/team/app/tags/list")]


async def test_a_web_server_that_is_no_registry_is_still_told_apart() -> None:
    with fake_registry() as fake:
        not_found = Reply(404, {"Content-Type": "text/plain"}, b"404 page not found")
        for path in ("/v2/", "/v2/team/app/manifests/1", "/v1/_ping"):
            fake.route("GET", path, not_found)
        async with Client(use_docker_config=False) as client:
            with pytest.raises(UnsupportedProtocolError, match=f"no registry API found at {fake.host}") as caught:
                await client.inspect(Reference.parse(f"{fake.host}/team/app:1"))
        assert caught.value.exit_code == 7
        # The manifest's answer showed no v2 API: the probe asked both pings, as it always did.
        assert [path for _, path, _ in fake.requests] == ["/v2/team/app/manifests/1", "/v2/", "/v1/_ping"]
