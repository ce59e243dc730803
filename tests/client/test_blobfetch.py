"""The thread-side upload of blob bodies, directly: a file slice, 307 re-sends, both send paths."""

from __future__ import annotations

import io
import ssl

import pytest

from regtool.client.blobfetch import BlobFetcher, SourceTruncated
from regtool.client.connections import ConnectionPool
from tests.client.fakeregistry import Reply, fake_registry


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
