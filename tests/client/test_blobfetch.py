"""The thread-side HTTP of blob bodies, directly: redirects, Authorization across origins, both upload paths."""

from __future__ import annotations

import io
import ssl
from collections.abc import Callable

import pytest

from regtool.client.blobfetch import BlobFetcher, HTTPStatusError, ResponseHead, SourceTruncated
from regtool.client.connections import ConnectionPool
from tests.client.fakeregistry import Reply, fake_registry


def _collect(into: bytearray) -> Callable[[ResponseHead], Callable[[memoryview], None]]:
    def begin(head: ResponseHead) -> Callable[[memoryview], None]:
        assert head.status == 200
        return lambda data: into.extend(data)

    return begin


def test_fetch_follows_redirect_and_drops_authorization_across_origins() -> None:
    body = bytes(range(256)) * 4096
    with fake_registry() as storage, fake_registry() as registry:
        registry.route("GET", "/v2/a/blobs/x", Reply(307, {"Location": f"{storage.url}/bucket/x?sig=1"}))
        storage.route("GET", "/bucket/x", Reply(200, {}, body))
        fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 30.0))
        got = bytearray()
        try:
            n = fetcher.fetch(f"{registry.url}/v2/a/blobs/x", {"Authorization": "Bearer t"}, _collect(got))
            # Same origin: a second fetch reuses the kept-alive connection and keeps the header.
            registry.route("GET", "/v2/a/blobs/y", Reply(200, {}, b"small"))
            small = bytearray()
            fetcher.fetch(f"{registry.url}/v2/a/blobs/y", {"Authorization": "Bearer t"}, _collect(small))
        finally:
            fetcher.pool.close()
        assert n == len(body) and bytes(got) == body and bytes(small) == b"small"
        assert registry.requests[0][2]["authorization"] == "Bearer t"
        assert "authorization" not in storage.requests[0][2]
        assert registry.requests[1][2]["authorization"] == "Bearer t"


def test_fetch_error_status_carries_the_body() -> None:
    with fake_registry() as registry:
        registry.route("GET", "/v2/a/blobs/x", Reply(404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}'))
        fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 30.0))
        try:
            with pytest.raises(HTTPStatusError) as caught:
                fetcher.fetch(f"{registry.url}/v2/a/blobs/x", {}, _collect(bytearray()))
        finally:
            fetcher.pool.close()
    assert caught.value.head.status == 404 and b"BLOB_UNKNOWN" in caught.value.body


class _NoFileno(io.BytesIO):
    def fileno(self) -> int:
        raise io.UnsupportedOperation("no fileno")


@pytest.mark.parametrize("with_fileno", [True, False])
def test_send_file_slice_and_307(tmp_path: object, with_fileno: bool) -> None:
    from pathlib import Path

    data = bytes(range(256)) * 8192
    path = Path(str(tmp_path)) / "blob"
    path.write_bytes(data)
    received: list[bytes] = []

    def final(method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        received.append(body)
        return Reply(201, {"Location": "/v2/a/blobs/d"})

    with fake_registry() as registry:
        registry.route("PUT", "/up/1", Reply(307, {"Location": "/up/2"}))
        registry.route("PUT", "/up/2", final)
        fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 30.0))

        def open_body() -> io.BufferedIOBase:
            return open(path, "rb") if with_fileno else _NoFileno(data)

        try:
            head, body = fetcher.send_file("PUT", f"{registry.url}/up/1", {}, open_body, 1000, 70000)
        finally:
            fetcher.pool.close()
    assert head.status == 201 and head.url.endswith("/up/2") and body == b""
    assert received == [data[1000:71000]]
    assert [r[2]["content-length"] for r in registry.requests] == ["70000", "70000"]


def test_send_file_source_too_short(tmp_path: object) -> None:
    with fake_registry() as registry:
        registry.route("PUT", "/up/1", Reply(201, {}))
        fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 30.0))
        try:
            with pytest.raises(SourceTruncated):
                fetcher.send_file("PUT", f"{registry.url}/up/1", {}, lambda: _NoFileno(b"abc"), 0, 10)
        finally:
            fetcher.pool.close()
