"""The pool's connections (API calls and blob bodies alike) wait for a silent registry no longer than the read
timeout, and say so."""

from __future__ import annotations

import ssl
import time

import pytest

from regtool.client.net.connections import ConnectionPool
from tests.cli.support import hanging_server


def test_a_silent_server_times_out_and_says_after_how_long() -> None:
    pool = ConnectionPool(ssl.create_default_context(), 0.5, connect_timeout=5.0)
    with hanging_server() as host:
        name, _, port = host.rpartition(":")
        conn = pool.get("http", name, int(port))
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=rf"no response from {host} within 0\.5 s"):
            conn.request("GET", "/v2/team/app/blobs/sha256:00")
            conn.getresponse()
        elapsed = time.monotonic() - started
        conn.close()
    pool.close()
    assert elapsed < 3, elapsed
