"""Connections opened before the client exists (``net/parking.py``, what the CLI does while it imports): the
pool takes a parked one where it would have dialled, and one the server closed never fails a request.

Against the real serve behind a relay that counts the connections it accepts (and cuts the first ones where a test
asks), so which connection carried which request is seen from the outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.client.net import parking
from regtool.reference import Reference
from tests.support.connrelay import run_connection_relay
from tests.support.images import BuiltImage, assert_layout_holds, write_image
from tests.support.pki import make_pki
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_parked_connections() -> Iterator[None]:
    parking.release_all()
    yield
    parking.release_all()


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[RunningServe, BuiltImage]]:
    image = write_image(tmp_path / "src", "1.0", [{"etc/motd": b"parked"}, {"bin/app": b"\x7fELF" + bytes(9000)}])
    with run_serve() as server:
        yield server, image


async def _push(server: RunningServe, tmp_path: Path) -> None:
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:1.0", Reference.parse(f"{server.host}/team/app:1.0"))


async def test_the_first_request_goes_over_the_parked_connection(
    seeded: tuple[RunningServe, BuiltImage], tmp_path: Path
) -> None:
    server, image = seeded
    await _push(server, tmp_path)
    with run_connection_relay(server.port) as relay:
        assert parking.dial_and_park("127.0.0.1", relay.port, {"http": 1}, 5.0) == 1
        assert relay.wait_accepted(1)
        async with Client(plain_http=True, retries=0) as client:
            inspected = await client.inspect(Reference.parse(f"{relay.host}/team/app:1.0"))
        assert inspected.digest == image.manifest.digest
        # The one connection there is was opened before the client existed, and it carried the request.
        assert relay.accepted == 1
        assert relay.first_bytes(0).startswith(b"GET /v2/team/app/manifests/1.0 HTTP/1.1\r\n")
        assert parking.parked_count("http", "127.0.0.1", relay.port) == 0


async def test_a_pull_uses_the_parked_connection(seeded: tuple[RunningServe, BuiltImage], tmp_path: Path) -> None:
    server, image = seeded
    await _push(server, tmp_path)
    with run_connection_relay(server.port) as relay:
        assert parking.dial_and_park("127.0.0.1", relay.port, {"http": 1}, 5.0) == 1
        assert relay.wait_accepted(1)
        async with Client(plain_http=True, retries=0, jobs=1) as client:
            pulled = await client.pull(Reference.parse(f"{relay.host}/team/app:1.0"), tmp_path / "out")
        assert pulled.digest == image.manifest.digest
        assert_layout_holds(tmp_path / "out", image)
        # The connection opened before the client existed carried one of the pull's requests (its pre-connect took
        # it in place of dialling: left parked, it would have carried nothing).
        assert relay.first_bytes(0).startswith(b"GET /v2/team/app/")
        assert parking.parked_count("http", "127.0.0.1", relay.port) == 0


async def test_a_parked_connection_is_kept_for_its_scheme(
    seeded: tuple[RunningServe, BuiltImage], tmp_path: Path
) -> None:
    server, image = seeded
    await _push(server, tmp_path)
    with run_connection_relay(server.port) as relay:
        assert parking.dial_and_park("127.0.0.1", relay.port, {"https": 1}, 5.0) == 1
        assert relay.wait_accepted(1)
        async with Client(plain_http=True, retries=0) as client:
            inspected = await client.inspect(Reference.parse(f"{relay.host}/team/app:1.0"))
        assert inspected.digest == image.manifest.digest
        # Plain http dialled its own: the connection parked for https (a TLS attempt) stays unused.
        assert relay.accepted == 2
        assert relay.first_bytes(0) == b""
        assert parking.parked_count("https", "127.0.0.1", relay.port) == 1


@pytest.mark.parametrize("cut_at", ["accept", "request"])
@pytest.mark.parametrize("command", ["pull", "inspect"])
async def test_a_parked_connection_the_server_closed_fails_nothing(
    seeded: tuple[RunningServe, BuiltImage], tmp_path: Path, command: str, cut_at: str
) -> None:
    """Closed while parked (the server's idle timeout), or as the request arrives: the request goes out again on
    a fresh connection, at once. No retries are allowed, so only the pool's own fresh-connection attempt can save
    it without a detour."""
    server, image = seeded
    await _push(server, tmp_path)
    server.requests.clear()
    with run_connection_relay(server.port, cut_first=1, cut_at=cut_at) as relay:
        assert parking.dial_and_park("127.0.0.1", relay.port, {"http": 1}, 5.0) == 1
        if cut_at == "accept":
            assert relay.wait_cut(0)
        ref = Reference.parse(f"{relay.host}/team/app:1.0")
        async with Client(plain_http=True, retries=0) as client:
            if command == "pull":
                pulled = await client.pull(ref, tmp_path / "out")
                assert pulled.digest == image.manifest.digest
                assert_layout_holds(tmp_path / "out", image)
            else:
                assert (await client.inspect(ref)).digest == image.manifest.digest
        assert relay.accepted >= 2
        # Not even the first request failed: a failed one would have had the client fall back to the ping.
        assert [e.path for e in server.requests.take() if e.path in {"/v2/", "/v1/_ping"}] == []
        if cut_at == "request":  # the parked connection was used, and cut under its request
            # (a pull's connections opened ahead wait in its pool, where the manifest or a blob may take them)
            first = b"GET /v2/team/app/manifests/1.0 " if command == "inspect" else b"GET /v2/team/app/"
            assert relay.first_bytes(0).startswith(first)
        assert parking.parked_count("http", "127.0.0.1", relay.port) == 0


async def test_tls_is_done_over_a_parked_connection(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    image = write_image(tmp_path / "src", "1.0", [{"etc/motd": b"over TLS"}])
    with run_serve(tls_cert=pki.server_cert, tls_key=pki.server_key) as server:
        async with Client(ca_cert=pki.ca_cert) as client:
            await client.push(f"{tmp_path / 'src'}:1.0", Reference.parse(f"{server.host}/team/app:1.0"))
        with run_connection_relay(server.port) as relay:
            assert parking.dial_and_park("127.0.0.1", relay.port, {"https": 1}, 5.0) == 1
            assert relay.wait_accepted(1)
            async with Client(ca_cert=pki.ca_cert, retries=0) as client:
                inspected = await client.inspect(Reference.parse(f"{relay.host}/team/app:1.0"))
            assert inspected.digest == image.manifest.digest
            # The connection parked before the client began the TLS handshake (a handshake record, then the
            # certificate checked against the CA as on any connection).
            assert relay.first_bytes(0)[:1] == b"\x16"
            assert parking.parked_count("https", "127.0.0.1", relay.port) == 0


def test_connections_that_cannot_be_opened_are_not_parked() -> None:
    with run_connection_relay(1) as relay:
        port = relay.port
    # Nothing listens there any more: the dial fails, quietly, and the pool would dial (and report) itself.
    assert parking.dial_and_park("127.0.0.1", port, {"http": 2}, 5.0) == 0
    assert parking.parked_count("http", "127.0.0.1", port) == 0


def test_connections_left_parked_are_closed_by_release_all() -> None:
    """What ``main``'s run leaves unused is closed at exit (``release_all`` is registered with atexit)."""
    with run_connection_relay(1) as relay:
        assert parking.dial_and_park("127.0.0.1", relay.port, {"https": 1, "http": 1}, 5.0) == 2
        assert relay.wait_accepted(2)
        parking.release_all()
        # The relay reads the end of each connection, nothing before it.
        assert relay.wait_cut(0) and relay.wait_cut(1)
        assert relay.first_bytes(0) == relay.first_bytes(1) == b""
        assert parking.parked_count("https", "127.0.0.1", relay.port) == 0
