"""Blob uploads from a file through the Client's own path: httpx sends the request over the pooled connections
and ``BlobFetcher.body_sender`` sends the body; a 307 sends it again, sendfile or buffer, a short file refused."""

from __future__ import annotations

import io
import ssl
from pathlib import Path

import anyio
import httpx
import pytest

from regtool.client.net.blobfetch import BlobFetcher, SourceTruncated
from regtool.client.net.connections import BODY_SENDER, BodySender, ConnectionPool
from regtool.client.net.transport import build_http_client
from tests.client.fakeregistry import Reply, fake_registry


class _NoFileno(io.BytesIO):
    def fileno(self) -> int:
        raise io.UnsupportedOperation("no fileno")


def _put(url: str, length: int, sender: BodySender) -> httpx.Response:
    async def go() -> httpx.Response:
        pool = ConnectionPool(ssl.create_default_context(), 30.0)
        try:
            async with build_http_client(pool=pool) as http:
                request = http.build_request(
                    "PUT", url, headers={"Content-Length": str(length)}, extensions={BODY_SENDER: sender}
                )
                response = await http.send(request)
                await response.aread()
                return response
        finally:
            pool.close()

    return anyio.run(go)


@pytest.mark.parametrize("with_fileno", [True, False])
def test_a_file_slice_is_sent_again_after_a_307(tmp_path: Path, with_fileno: bool) -> None:
    data = bytes(range(256)) * 8192
    path = tmp_path / "blob"
    path.write_bytes(data)
    received: list[bytes] = []
    seen: list[int] = []

    def final(method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        received.append(body)
        return Reply(201, {"Location": "/v2/a/blobs/d"})

    def open_body() -> io.BufferedIOBase:
        return open(path, "rb") if with_fileno else _NoFileno(data)

    with fake_registry() as registry:
        registry.route("PUT", "/up/1", Reply(307, {"Location": "/up/2"}))
        registry.route("PUT", "/up/2", final)
        fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 30.0))
        sender = fetcher.body_sender(open_body, 1000, 70000, on_bytes=seen.append)
        response = _put(f"{registry.url}/up/1", 70000, sender)
    assert response.status_code == 201 and str(response.url).endswith("/up/2")
    assert received == [data[1000:71000]]
    assert [r[2]["content-length"] for r in registry.requests] == ["70000", "70000"]
    assert sum(seen) == 2 * 70000  # sent in full to each location


def test_a_file_shorter_than_promised_is_refused(tmp_path: Path) -> None:
    with fake_registry() as registry:
        registry.route("PUT", "/up/1", Reply(201, {}))
        fetcher = BlobFetcher(ConnectionPool(ssl.create_default_context(), 30.0))
        sender = fetcher.body_sender(lambda: _NoFileno(b"abc"), 0, 10)
        with pytest.raises(SourceTruncated):
            _put(f"{registry.url}/up/1", 10, sender)
