"""ConnectionPool: connections opened ahead (preconnect) in the background, the caller (the event loop, about to
send the request they are for) starting one thread, not one per connection; and idle connections reused whatever
their TLS version or descriptor number."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from regtool.client import Client
from regtool.client.net.connections import ConnectionPool, PoolTransport
from regtool.client.tasks import LARGE_WEIGHT, PRECONNECT_PER_JOB
from regtool.errors import UsageError
from tests.support.pki import make_pki


def test_preconnect_opens_every_connection_from_one_thread_started_by_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caller = threading.current_thread()
    started_by_caller: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        if threading.current_thread() is caller:
            started_by_caller.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        pool = ConnectionPool(ssl.create_default_context(), timeout=5)
        pool.preconnect("http", "127.0.0.1", port, 6)
        assert started_by_caller == ["regtool-preconnect"]
        accepted = []
        server.settimeout(5)
        for _ in range(6):
            accepted.append(server.accept()[0])
        deadline = time.monotonic() + 5
        while len(pool._idle.get(("http", "127.0.0.1", port), [])) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        ready = [pool.get("http", "127.0.0.1", port) for _ in range(6)]
        assert all(conn.sock is not None for conn in ready)  # each one connected, none dialled on demand
        for conn in ready:
            conn.close()
        pool.close()
        for peer in accepted:
            peer.close()


@contextlib.contextmanager
def _serving_ok(wrap: Callable[[socket.socket], socket.socket] = lambda s: s) -> Iterator[tuple[int, list[object]]]:
    """A server answering every request on every connection with a 2-byte body: its port, and the connections
    it accepted."""
    accepted: list[object] = []
    opened: list[socket.socket] = []

    def handle(raw: socket.socket) -> None:
        try:
            conn = wrap(raw)
            opened.append(conn)
            reader = conn.makefile("rb")
            while reader.readline():
                while reader.readline() not in (b"\r\n", b""):
                    pass
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass

    with socket.create_server(("127.0.0.1", 0)) as server:

        def accept() -> None:
            while True:
                try:
                    raw, _ = server.accept()
                except OSError:
                    return
                accepted.append(raw)
                threading.Thread(target=handle, args=(raw,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        try:
            yield server.getsockname()[1], accepted
        finally:
            for conn in [*opened, *accepted]:
                conn.close()  # type: ignore[attr-defined]


def _get_ok(pool: ConnectionPool, url: str, times: int) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=PoolTransport(pool)) as http:
            for _ in range(times):
                assert (await http.get(url)).content == b"ok"

    asyncio.run(main())


def _idle(pool: ConnectionPool, origin: tuple[str, str, int], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(pool._idle.get(origin, [])) < count:
        assert time.monotonic() < deadline, f"{count} idle connections"
        time.sleep(0.01)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_connections_opened_ahead_carry_the_requests_over_tls_1_3_too(tmp_path: Path, version: ssl.TLSVersion) -> None:
    # A TLS 1.3 server sends its session tickets after the handshake: the idle connection reads as ready,
    # and must not be taken for one the server closed.
    pki = make_pki(tmp_path / "pki")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)
    server_context.maximum_version = version
    with _serving_ok(lambda raw: server_context.wrap_socket(raw, server_side=True)) as (port, accepted):
        pool = ConnectionPool(ssl.create_default_context(cafile=str(pki.ca_cert)), timeout=5)
        pool.preconnect("https", "127.0.0.1", port, 4)
        _idle(pool, ("https", "127.0.0.1", port), 4)
        time.sleep(0.2)  # the tickets arrive
        _get_ok(pool, f"https://127.0.0.1:{port}/", 4)
        pool.close()
    assert len(accepted) == 4, "every request went over a connection opened ahead"


def test_an_idle_connection_above_fd_setsize_is_reused() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.fail(f"the file descriptor limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        with _serving_ok() as (port, accepted):
            pool = ConnectionPool(ssl.create_default_context(), timeout=5)
            _get_ok(pool, f"http://127.0.0.1:{port}/", 3)
            (conn,) = pool._idle[("http", "127.0.0.1", port)]
            assert conn.sock is not None and conn.sock.fileno() >= 1024
            pool.close()
        assert len(accepted) == 1
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_host_whose_tls_settings_fail_opens_nothing_ahead_and_counts_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def broken(host: str) -> ssl.SSLContext:
        raise UsageError(f"{host}: certs.d holds a key without its certificate")

    pool = ConnectionPool(ssl.create_default_context(), timeout=5, ssl_for=broken)
    pool.preconnect("https", "127.0.0.1", 9, 3)
    deadline = time.monotonic() + 5
    while pool._opening.get(("https", "127.0.0.1", 9)):
        assert time.monotonic() < deadline, "the connections being opened were never counted down"
        time.sleep(0.01)
    assert "Traceback" not in capfd.readouterr().err
    pool.close()


def test_preconnect_opens_no_more_than_the_per_registry_cap_lets_move(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    monkeypatch.setattr(ConnectionPool, "preconnect", lambda self, scheme, host, port, count: asked.append(count))

    async def main() -> None:
        async with Client(jobs=8, per_registry=1) as client:
            client.api.preconnect("http://127.0.0.1:5000", PRECONNECT_PER_JOB * 8)
        async with Client(jobs=8) as client:
            client.api.preconnect("http://127.0.0.1:5000", PRECONNECT_PER_JOB * 8)

    asyncio.run(main())
    # One large transfer, or LARGE_WEIGHT small ones, at a time with per_registry=1; the jobs' own count without.
    assert asked == [LARGE_WEIGHT, PRECONNECT_PER_JOB * 8]
