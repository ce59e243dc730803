"""kill -9 of ``regtool serve`` in the middle of uploads, then a restart on the same root: nothing corrupt shows."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import digest_of
from tests.support.serve import ServeProcess, run_serve_process


def _push_forever(server: ServeProcess, stop: threading.Event, pushed: list[str], seed: int) -> None:
    """Push random blobs (monolithic, chunked and streamed) until the server dies."""
    rng = random.Random(seed)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                blob = rng.randbytes(rng.choice([1, 300_000, 3_000_000]))
                digest = digest_of(blob)
                mode = rng.choice(["post", "put", "chunks"])
                if mode == "post":
                    client.post("/v2/crash/blobs/uploads/", params={"digest": digest}, content=blob)
                else:
                    location = client.post("/v2/crash/blobs/uploads/").headers["location"]
                    if mode == "chunks":
                        half = len(blob) // 2
                        location = client.patch(location, content=blob[:half]).headers["location"]
                        client.put(location, params={"digest": digest}, content=blob[half:])
                    else:
                        client.put(location, params={"digest": digest}, content=blob)
                pushed.append(digest)
    except (httpx.HTTPError, OSError, KeyError):
        return


def _half_sent_upload(server: ServeProcess) -> tuple[socket.socket, str]:
    """A POST ?digest= that declares 10 MiB and sends 2 MiB, left hanging when the server is killed."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    blob = os.urandom(1024 * 1024)
    digest = "sha256:" + hashlib.sha256(blob * 10).hexdigest()
    head = (
        f"POST /v2/crash/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Length: {len(blob) * 10}\r\n\r\n"
    )
    sock.sendall(head.encode() + blob + blob)
    return sock, digest


def _check_root(root: Path) -> int:
    """Every stored blob hashes to its name; every link names a stored blob. Returns the number of blobs."""
    count = 0
    for data in (root / "blobs").rglob("data"):
        assert f"sha256:{hashlib.sha256(data.read_bytes()).hexdigest()}" == f"sha256:{data.parent.name}", data
        count += 1
    for link in (root / "repositories").rglob("_layers/sha256/*/link"):
        digest = link.read_text()
        assert (root / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data").is_file(), link
    return count


@pytest.mark.slow
def test_kill_9_mid_upload_then_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    pushed: list[str] = []
    for cycle in range(3):
        with run_serve_process(root, "--quiet") as server:
            stop = threading.Event()
            workers = [
                threading.Thread(target=_push_forever, args=(server, stop, pushed, cycle * 10 + i)) for i in range(3)
            ]
            for worker in workers:
                worker.start()
            hanging, never_finished = _half_sent_upload(server)
            time.sleep(0.6 + 0.3 * cycle)
            server.kill()
            # The cut-short upload left its partial bytes in the upload area, and nowhere else.
            partial = [p.stat().st_size for p in (root / "uploads").glob("*/data")]
            assert any(size > 0 for size in partial), partial
            assert not (root / "blobs" / "sha256" / never_finished[7:9] / never_finished[7:]).exists()
            stop.set()
            for worker in workers:
                worker.join(timeout=20)
            hanging.close()
        _check_root(root)
    with run_serve_process(root, "--quiet") as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert _check_root(root) >= 1
        assert pushed, "some uploads finished before the kills"
        for digest in pushed:
            response = client.get(f"/v2/crash/blobs/{digest}")
            assert response.status_code == 200
            assert digest_of(response.content) == digest
        assert client.head(f"/v2/crash/blobs/{never_finished}").status_code == 404
        # Blobs whose upload was cut short are absent, never partial.
        for data in (root / "blobs").rglob("data"):
            response = client.head(f"/v2/crash/blobs/sha256:{data.parent.name}")
            assert response.status_code in (200, 404)
        # The server still takes uploads on the same root.
        blob = os.urandom(1000)
        response = client.post("/v2/crash/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob)
        assert response.status_code == 201
