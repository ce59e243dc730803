"""Blob GET/HEAD/Range/DELETE and upload sessions: digests verified, nothing stored on failure."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import digest_of, push_blob, random_blob
from tests.support.serve import RunningServe, run_serve


def _code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


@pytest.mark.parametrize(
    ("header", "status", "expected"),
    [
        ("bytes=0-0", 206, (0, 0)),
        ("bytes=10-19", 206, (10, 19)),
        ("bytes=990-", 206, (990, 999)),
        ("bytes=-5", 206, (995, 999)),
        ("bytes=900-5000", 206, (900, 999)),
        ("bytes=1000-", 416, None),
        ("bytes=5-2", 416, None),
        ("bytes=abc", 416, None),
        ("items=0-1", 416, None),
        ("bytes=0-1,5-6", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-" + "9" * 5000, 416, None),  # int() refuses that many digits: never a 500
    ],
)
def test_blob_ranges(client: httpx.Client, header: str, status: int, expected: tuple[int, int] | None) -> None:
    blob = random_blob(1000)
    digest = push_blob(client, "r", blob)
    response = client.get(f"/v2/r/blobs/{digest}", headers={"Range": header})
    assert response.status_code == status
    if expected is None:
        assert _code(response) == "RANGE_INVALID"
        assert response.headers["content-range"] == "bytes */1000"
    else:
        first, last = expected
        assert response.content == blob[first : last + 1]
        assert response.headers["content-range"] == f"bytes {first}-{last}/1000"
        assert response.headers["content-length"] == str(last - first + 1)


def test_blob_head_and_empty_blob(client: httpx.Client) -> None:
    digest = push_blob(client, "r", b"")
    head = client.head(f"/v2/r/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == "0"
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-type"] == "application/octet-stream"
    assert client.get(f"/v2/r/blobs/{digest}").content == b""


def test_blobs_are_linked_per_repository(client: httpx.Client) -> None:
    blob = random_blob(100)
    digest = push_blob(client, "a", blob)
    assert client.get(f"/v2/b/blobs/{digest}").status_code == 404
    assert client.post("/v2/b/blobs/uploads/", params={"mount": digest, "from": "a"}).status_code == 201
    assert client.get(f"/v2/b/blobs/{digest}").content == blob
    assert client.delete(f"/v2/a/blobs/{digest}").status_code == 202
    assert client.get(f"/v2/a/blobs/{digest}").status_code == 404
    assert client.get(f"/v2/b/blobs/{digest}").content == blob


def test_single_post_with_digest(client: httpx.Client) -> None:
    blob = random_blob(5000)
    response = client.post("/v2/r/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob)
    assert response.status_code == 201
    assert response.headers["location"] == f"/v2/r/blobs/{digest_of(blob)}"
    assert response.headers["docker-content-digest"] == digest_of(blob)
    assert client.get(f"/v2/r/blobs/{digest_of(blob)}").content == blob
    bad = client.post("/v2/r/blobs/uploads/", params={"digest": digest_of(b"other")}, content=blob)
    assert bad.status_code == 400 and _code(bad) == "DIGEST_INVALID"


def test_digest_mismatch_stores_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with run_serve(root) as server, httpx.Client(base_url=server.url) as client:
        blob = random_blob(3000)
        location = client.post("/v2/r/blobs/uploads/").headers["location"]
        assert client.patch(location, content=blob).status_code == 202
        wrong = digest_of(blob + b"!")
        response = client.put(location, params={"digest": wrong})
        assert response.status_code == 400 and _code(response) == "DIGEST_INVALID"
        assert client.get(f"/v2/r/blobs/{wrong}").status_code == 404
        assert client.get(f"/v2/r/blobs/{digest_of(blob)}").status_code == 404
        assert client.get(location).status_code == 404
        assert not (root / "blobs").exists()
        assert list((root / "uploads").iterdir()) == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "DIGEST_INVALID"),
        ({"digest": "sha256:nothex"}, "DIGEST_INVALID"),
        ({"digest": "crc32:1234"}, "DIGEST_INVALID"),
    ],
)
def test_close_without_a_valid_digest(client: httpx.Client, query: dict[str, str], code: str) -> None:
    location = client.post("/v2/r/blobs/uploads/").headers["location"]
    response = client.put(location, params=query, content=b"abc")
    assert response.status_code == 400 and _code(response) == code
    assert client.get(location).status_code == 204


def test_bad_content_ranges_are_416_and_keep_the_upload(client: httpx.Client) -> None:
    location = client.post("/v2/r/blobs/uploads/").headers["location"]
    assert client.patch(location, content=b"0123456789", headers={"Content-Range": "0-9"}).status_code == 202
    for header in ("garbage", "5-2", "10-", "bytes 10-11/12x", "10-" + "9" * 5000):
        response = client.patch(location, content=b"ab", headers={"Content-Range": header})
        assert response.status_code == 416, header
    # A range that does not match the body's length is refused and leaves nothing behind.
    response = client.patch(location, content=b"abc", headers={"Content-Range": "10-19"})
    assert response.status_code == 416
    assert client.get(location).headers["range"] == "0-9"
    blob = b"0123456789abc"
    response = client.put(
        location, params={"digest": digest_of(blob)}, content=b"abc", headers={"Content-Range": "10-12"}
    )
    assert response.status_code == 201
    assert client.get(f"/v2/r/blobs/{digest_of(blob)}").content == blob


def test_cancel_upload(client: httpx.Client) -> None:
    location = client.post("/v2/r/blobs/uploads").headers["location"]
    client.patch(location, content=b"data")
    assert client.delete(location).status_code == 204
    response = client.get(location)
    assert response.status_code == 404 and _code(response) == "BLOB_UPLOAD_UNKNOWN"
    assert client.patch(location, content=b"x").status_code == 404
    assert client.delete(location).status_code == 404


def test_concurrent_uploads_of_the_same_blob(server: RunningServe) -> None:
    blob = random_blob(2 * 1024 * 1024 + 17)

    def upload(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            location = client.post(f"/v2/r{i % 2}/blobs/uploads/").headers["location"]
            half = len(blob) // 2
            client.patch(location, content=blob[:half])
            client.patch(location, content=blob[half:])
            return client.put(location, params={"digest": digest_of(blob)}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(upload, range(6))) == [201] * 6
    with httpx.Client(base_url=server.url) as client:
        for repo in ("r0", "r1"):
            assert client.get(f"/v2/{repo}/blobs/{digest_of(blob)}").content == blob


def test_resumed_upload_after_hash_state_is_lost(server: RunningServe) -> None:
    # After a restart the in-memory hash state is gone; closing must hash the file instead.
    with httpx.Client(base_url=server.url) as client:
        blob = random_blob(4000)
        location = client.post("/v2/r/blobs/uploads/").headers["location"]
        client.patch(location, content=blob[:1000], headers={"Content-Range": "0-999"})
        client.patch(location, content=blob[1000:1500], headers={"Content-Range": "1000-1400"})  # length mismatch
        assert client.get(location).headers["range"] == "0-999"
        client.patch(location, content=blob[1000:], headers={"Content-Range": f"1000-{len(blob) - 1}"})
        assert client.put(location, params={"digest": digest_of(blob)}).status_code == 201
        assert client.get(f"/v2/r/blobs/{digest_of(blob)}").content == blob


def test_a_dropped_download_stops_reading(server: RunningServe) -> None:
    size = 48 * 1024 * 1024
    with httpx.Client(base_url=server.url, timeout=30) as client:
        location = client.post("/v2/r/blobs/uploads/").headers["location"]
        blob = random_blob(size)
        assert client.put(location, params={"digest": digest_of(blob)}, content=blob).status_code == 201
        with client.stream("GET", f"/v2/r/blobs/{digest_of(blob)}") as response:
            assert response.status_code == 200
            next(response.iter_raw(65536))
        # The connection is closed with most of the blob unsent; the server notices and stops.
        deadline = time.monotonic() + 10
        while not server.requests.events(method="GET") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/v2/").status_code == 200
    sent = server.requests.events(method="GET", path_contains="/blobs/")[0].sent
    assert sent < size // 2


def test_a_chunk_cut_short_is_undone(server: RunningServe) -> None:
    with httpx.Client(base_url=server.url) as client:
        location = client.post("/v2/r/blobs/uploads/").headers["location"]
        assert client.patch(location, content=b"x" * 100, headers={"Content-Range": "0-99"}).status_code == 202
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\nContent-Range: 100-2097251\r\n"
                "Content-Length: 2097152\r\n\r\n"
            )
            sock.sendall(head.encode() + b"y" * (1024 * 1024 + 5))
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while not server.requests.events(method="PATCH")[1:] and time.monotonic() < deadline:
            time.sleep(0.02)
        # The partial chunk is gone, so the client can resend it from the same offset.
        assert client.get(location).headers["range"] == "0-99"
        blob = b"x" * 100 + b"z" * 50
        assert client.patch(location, content=b"z" * 50, headers={"Content-Range": "100-149"}).status_code == 202
        assert client.put(location, params={"digest": digest_of(blob)}).status_code == 201
        assert client.get(f"/v2/r/blobs/{digest_of(blob)}").content == blob


def test_a_body_that_stops_sending_is_cut_and_its_upload_resumes(tmp_path: Path) -> None:
    with run_serve(tmp_path / "registry", body_timeout=0.5) as server, httpx.Client(base_url=server.url) as client:
        location = client.post("/v2/r/blobs/uploads/").headers["location"]
        path = httpx.URL(location).raw_path.decode() if location.startswith("http") else location
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            stalled.sendall(
                f"PATCH {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 400
            )
            started = time.monotonic()
            answer = stalled.recv(65536).decode("latin-1")
            assert time.monotonic() - started < 5
        assert answer.startswith("HTTP/1.1 400"), answer[:200]
        assert "BLOB_UPLOAD_INVALID" in answer
        # The session is free again (its lock released) and kept what arrived.
        assert client.get(location).headers["range"] == "0-399"
        blob = b"x" * 400 + b"y" * 100
        assert client.patch(location, content=blob[400:]).status_code == 202
        closed = client.put(location, params={"digest": digest_of(blob)})
        assert closed.status_code == 201, closed.text


def test_upload_locks_live_only_while_held() -> None:
    import anyio

    from regtool.server.context import UploadLocks

    locks = UploadLocks()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(hold, f"id-{n % 5}")
        assert len(locks) == 0

    async def hold(upload_id: str) -> None:
        async with locks(upload_id):
            await anyio.sleep(0.001)

    anyio.run(main)


def test_a_request_head_past_a_mebibyte_is_431_and_a_large_token_is_not(tmp_path: Path) -> None:
    with run_serve(tmp_path / "registry") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\nX-Token: {'a' * 16000}\r\n\r\n".encode())
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\n".encode())
            answer = b""
            with contextlib.suppress(OSError):  # the server may close while the rest is still being sent
                for _ in range(64):
                    conn.sendall(b"X-Filler: " + b"b" * (64 << 10) + b"\r\n")
            with contextlib.suppress(OSError):
                while chunk := conn.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_a_close_bringing_bytes_to_an_unknown_session_is_404_even_for_a_blob_the_repository_has(
    client: httpx.Client,
) -> None:
    blob = random_blob(500)
    push_blob(client, "r", blob)
    phantom = "/v2/r/blobs/uploads/0b5c0b1e-6d6e-4a8c-9d73-0c4c1e6f2a11"
    refused = client.put(phantom, params={"digest": digest_of(blob)}, content=b"bytes nobody checked")
    assert refused.status_code == 404
    assert _code(refused) == "BLOB_UPLOAD_UNKNOWN"
