"""The blob worker threads' connections wait for a silent registry no longer than the client's read timeout."""

from __future__ import annotations

import ssl
import time

import pytest

from regtool.client.blobfetch import BlobFetcher
from regtool.client.connections import ConnectionPool
from tests.cli.support import hanging_server


def test_fetch_from_a_silent_server_times_out_and_says_after_how_long() -> None:
    fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 0.5, connect_timeout=5.0))
    with hanging_server() as host:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=rf"no response from {host} within 0\.5 s"):
            fetcher.fetch(f"http://{host}/v2/team/app/blobs/sha256:00", {}, lambda head: lambda piece: None)
        elapsed = time.monotonic() - started
    fetcher.pool.close()
    assert elapsed < 3, elapsed
