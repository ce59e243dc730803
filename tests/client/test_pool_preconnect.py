"""ConnectionPool.preconnect: the connections are opened in the background, and the caller (the event loop, about
to send the request they are for) starts one thread, not one per connection."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from regtool.client.net.connections import ConnectionPool


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
