"""Zero-copy blob sends: ``sendfile(2)`` on plain HTTP with filesystem storage, chunked sends everywhere else.

Against a real serve under uvicorn with regtool's protocol class (``uvicorn_protocol.py``); ``os.sendfile`` is
wrapped (still called) only to see whether the zero-copy path ran. The send loop itself is also driven over a
real socket pair, for what a server cannot be made to do on demand: a file that shrinks, a client that stops.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from regtool.server import uvicorn_protocol, zerocopy
from tests.auth.support import run_auth_serve
from tests.server.helpers import digest_of, push_blob, random_blob
from tests.support.pki import make_pki
from tests.support.serve import run_serve


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every ``os.sendfile`` call the zero-copy path makes (the real call still happens)."""
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sent = real(out_fd, in_fd, offset, count)
        calls.append(sent)
        return sent

    monkeypatch.setattr(zerocopy.os, "sendfile", counting)
    return calls


def test_a_blob_get_leaves_by_sendfile_byte_exact(tmp_path: Path, sendfile_calls: list[int]) -> None:
    blob = random_blob(9 * 1024 * 1024 + 7)
    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        digest = push_blob(client, "zc/blob", blob)
        response = client.get(f"/v2/zc/blob/blobs/{digest}")
        assert response.status_code == 200
        assert response.content == blob
        assert response.headers["content-length"] == str(len(blob))
        assert response.headers["docker-content-digest"] == digest
        # All but the last byte (sent the ordinary way, after the request is logged) went through sendfile.
        assert sum(sendfile_calls) == len(blob) - 1
        event = server.requests.events(method="GET", path_contains="/blobs/")[0]
        assert event.sent == len(blob)


def test_ranges_and_keep_alive_after_zero_copy_responses(tmp_path: Path, sendfile_calls: list[int]) -> None:
    blob = random_blob(3 * 1024 * 1024)
    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        digest = push_blob(client, "zc/range", blob)
        for first, last in [(0, 0), (1, 1), (5, 1024 * 1024 + 3), (len(blob) - 10, len(blob) - 1)]:
            part = client.get(f"/v2/zc/range/blobs/{digest}", headers={"Range": f"bytes={first}-{last}"})
            assert part.status_code == 206
            assert part.headers["content-range"] == f"bytes {first}-{last}/{len(blob)}"
            assert part.content == blob[first : last + 1]
        # The same pooled connection still carries well-formed responses, and the head was never overtaken.
        assert client.get("/v2/").status_code == 200
        assert client.get(f"/v2/zc/range/blobs/{digest}").content == blob
        assert client.head(f"/v2/zc/range/blobs/{digest}").headers["content-length"] == str(len(blob))
        assert sendfile_calls


def test_in_memory_storage_sends_chunks(sendfile_calls: list[int]) -> None:
    blob = random_blob(2 * 1024 * 1024 + 1)
    with run_serve(None) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        digest = push_blob(client, "zc/mem", blob)
        assert client.get(f"/v2/zc/mem/blobs/{digest}").content == blob
    assert sendfile_calls == []


def test_an_unfamiliar_uvicorn_gets_plain_sends(
    tmp_path: Path, sendfile_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A uvicorn whose request cycle lacks what the zero-copy sender updates must still serve every blob.
    monkeypatch.setattr(uvicorn_protocol, "_CYCLE_STATE", (*uvicorn_protocol._CYCLE_STATE, "renamed_in_uvicorn_2"))
    blob = random_blob(3 * 1024 * 1024 + 5)
    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        digest = push_blob(client, "zc/compat", blob)
        assert client.get(f"/v2/zc/compat/blobs/{digest}").content == blob
    assert sendfile_calls == []


def test_https_is_never_sent_with_sendfile(tmp_path: Path, sendfile_calls: list[int]) -> None:
    # The kernel cannot encrypt: a sendfile under TLS would put plaintext on the wire and break the stream.
    pki = make_pki(tmp_path / "pki")
    trust = ssl.create_default_context(cafile=str(pki.ca_cert))
    blob = random_blob(2 * 1024 * 1024)
    with (
        run_auth_serve(tmp_path / "registry", tls=(pki.server_cert, pki.server_key)) as server,
        httpx.Client(base_url=server.url, verify=trust, timeout=30) as client,
    ):
        digest = push_blob(client, "zc/tls", blob)
        response = client.get(f"/v2/zc/tls/blobs/{digest}")
        assert response.content == blob
        assert digest_of(response.content) == digest
    assert sendfile_calls == []


def test_clients_that_stop_reading_hold_up_neither_other_requests_nor_shutdown(tmp_path: Path) -> None:
    blob = random_blob(64 * 1024 * 1024)
    small = random_blob(1000)
    stalled: list[socket.socket] = []
    with run_serve(tmp_path / "registry") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            digest = push_blob(client, "zc/stall", blob)
            small_digest = push_blob(client, "zc/stall", small)
        # More stuck downloads than anyio's default thread limit (40): each holds a sending thread.
        for _ in range(45):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.sendall(f"GET /v2/zc/stall/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert conn.recv(12) == b"HTTP/1.1 200"
            stalled.append(conn)
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get(f"/v2/zc/stall/blobs/{small_digest}").content == small
        started = time.monotonic()
    # run_serve's exit stopped uvicorn: its graceful period (5 s) ends by cancelling the stuck responses, and the
    # sending threads give up within their poll interval instead of waiting for readers that never come.
    assert time.monotonic() - started < 9
    for conn in stalled:
        conn.close()


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_side, client_side = socket.socketpair()
    server_side.setblocking(False)
    yield server_side, client_side
    server_side.close()
    client_side.close()


class _Transport:
    """The three things ``send_file`` asks of a transport, over a real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def _reader(sock: socket.socket, into: bytearray) -> threading.Thread:
    def read() -> None:
        # A test that stops reading early leaves this thread behind; the fixture's close of the socket ends it
        # (EBADF), which is its end, not a failure of whatever test runs next. What was read is still asserted.
        with contextlib.suppress(OSError):
            while chunk := sock.recv(1 << 20):
                into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_send_file_moves_the_range_exactly(tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]) -> None:
    data = random_blob(5 * 1024 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)
    server_side, client_side = socket_pair
    received = bytearray()
    reader = _reader(client_side, received)
    with path.open("rb") as file:
        sent = anyio.run(zerocopy.send_file, _Transport(server_side), file, 123, len(data) - 200)
    server_side.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert sent == len(data) - 200
    assert bytes(received) == data[123 : len(data) - 77]


def test_send_file_refuses_a_file_shorter_than_promised(
    tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 1000)
    server_side, client_side = socket_pair
    received = bytearray()
    _reader(client_side, received)
    with path.open("rb") as file, pytest.raises(OSError, match="ended 500 bytes early"):
        anyio.run(zerocopy.send_file, _Transport(server_side), file, 0, 1500)


def test_send_file_returns_what_left_when_the_client_goes_away(
    tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(random_blob(32 * 1024 * 1024))
    server_side, client_side = socket_pair
    threading.Timer(0.2, client_side.close).start()
    with path.open("rb") as file:
        sent = anyio.run(zerocopy.send_file, _Transport(server_side), file, 0, 32 * 1024 * 1024)
    assert 0 < sent < 32 * 1024 * 1024


class _GrowingFile:
    """A file appended to by a writer thread a piece at a time, with the ``follow`` a sender waits on."""

    def __init__(self, path: Path, data: bytes, piece: int) -> None:
        self.path = path
        self.data = data
        self.piece = piece
        self.written = 0
        self.grown = threading.Condition()
        path.write_bytes(b"")

    def write_all(self) -> None:
        with self.path.open("ab", buffering=0) as out:
            for start in range(0, len(self.data), self.piece):
                time.sleep(0.005)
                out.write(self.data[start : start + self.piece])
                with self.grown:
                    self.written = min(len(self.data), start + self.piece)
                    self.grown.notify_all()

    def follow(self, offset: int, timeout: float) -> int:
        with self.grown:
            if self.written <= offset:
                self.grown.wait(timeout)
            return self.written


def test_send_file_follows_a_file_as_it_is_written(
    tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    data = random_blob(6 * 1024 * 1024 + 123)
    growing = _GrowingFile(tmp_path / "blob", data, 256 * 1024)
    server_side, client_side = socket_pair
    received = bytearray()
    reader = _reader(client_side, received)
    writer = threading.Thread(target=growing.write_all)
    with growing.path.open("rb") as file:
        writer.start()
        sent = anyio.run(
            lambda: zerocopy.send_file(_Transport(server_side), file, 10, len(data) - 11, follow=growing.follow)
        )
    writer.join(10)
    server_side.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert sent == len(data) - 11
    assert bytes(received) == data[10:-1]


def test_a_follow_that_raises_stops_the_transfer_there(
    tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(random_blob(4 * 1024 * 1024))
    server_side, client_side = socket_pair
    received = bytearray()
    reader = _reader(client_side, received)

    def follow(offset: int, timeout: float) -> int:
        if offset >= 1024 * 1024:
            raise RuntimeError("the writer failed")
        return 1024 * 1024

    with path.open("rb") as file, pytest.raises(RuntimeError, match="the writer failed"):
        anyio.run(lambda: zerocopy.send_file(_Transport(server_side), file, 0, 4 * 1024 * 1024, follow=follow))
    server_side.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert bytes(received) == path.read_bytes()[: 1024 * 1024]
