"""No request reads or writes outside the storage root, whatever the name, reference, digest or upload id."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.serve import RunningServe, run_serve


def raw_request(server: RunningServe, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``target`` exactly as given (no client-side normalisation); return status and body."""
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    response = b"".join(chunks)
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


HOSTILE_TARGETS = [
    ("GET", "/v2/../../etc/passwd"),
    ("GET", "/v2/a/../../../etc/manifests/latest"),
    ("GET", "/v2/a/..%2F..%2F..%2Fescape/manifests/latest"),
    ("PUT", "/v2/a%2F..%2F..%2Fescape/manifests/latest"),
    ("PUT", "/v2/%2Fetc/manifests/latest"),
    ("PUT", "//etc/passwd"),
    ("GET", "/v2//etc/passwd/manifests/latest"),
    ("GET", "/v2/a%00b/manifests/latest"),
    ("GET", "/v2/a/manifests/.."),
    ("PUT", "/v2/a/manifests/..%2F..%2Fescape"),
    ("PUT", "/v2/a/manifests/%2E%2E"),
    ("GET", "/v2/a/blobs/sha256:..%2F..%2F..%2Fetc"),
    ("DELETE", "/v2/a/blobs/sha256:../../x"),
    ("GET", "/v2/a/blobs/uploads/..%2F..%2F..%2Fescape"),
    ("PATCH", "/v2/a/blobs/uploads/..%2F..%2Fescape"),
    ("PUT", "/v2/a/blobs/uploads/%2E%2E?digest=sha256:" + "0" * 64),
    ("DELETE", "/v2/a/blobs/uploads/..%2F..%2F..%2F"),
    ("GET", "/v2/a/blobs/uploads/%2Fetc%2Fpasswd"),
    ("DELETE", "/v2/a/blobs/uploads/uploads"),
    ("GET", "/v2/a/referrers/sha256:..%2F..%2Fetc"),
    ("GET", "/v2/" + "/".join(["abcdefghij"] * 30) + "/tags/list"),
    ("PUT", "/v2/" + "a" * 300 + "/manifests/latest"),
    ("GET", "/v2/a/tags/list?last=..%2F..%2F..%2F"),
    ("POST", "/v2/a/blobs/uploads/?mount=sha256:..%2F..&from=..%2F..%2Fx"),
    ("POST", "/v2/a/blobs/uploads/?mount=sha256:" + "1" * 64 + "&from=..%2F..%2Fx"),
]


@dataclass(frozen=True)
class Sandbox:
    server: RunningServe
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One server for the module: a root, and a sentinel file beside it that no request may touch."""
    base = tmp_path_factory.mktemp("inside")
    (base / "sentinel").write_bytes(b"untouched")
    with run_serve(base / "root") as server:
        yield Sandbox(server, base)


@pytest.mark.parametrize(("method", "target"), HOSTILE_TARGETS)
def test_hostile_paths_get_a_4xx_and_touch_nothing(sandbox: Sandbox, method: str, target: str) -> None:
    before = _tree(sandbox.root)
    status, body = raw_request(sandbox.server, method, target, b'{"schemaVersion":2}' if method == "PUT" else b"")
    assert 400 <= status < 500, (status, body)
    assert (sandbox.base / "sentinel").read_bytes() == b"untouched"
    assert _tree(sandbox.root) == before
    assert sorted(os.listdir(sandbox.base)) == ["root", "sentinel"]
    assert httpx.get(f"{sandbox.server.url}/v2/").status_code == 200


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/v2/a/..%2Fb/manifests/latest", "NAME_INVALID"),
        ("/v2/UPPER/manifests/latest", "NAME_INVALID"),
        ("/v2/a%00b/tags/list", "NAME_INVALID"),
        ("/v2/" + "/".join(["abcdefghij"] * 30) + "/tags/list", "NAME_INVALID"),
        # A GET of what is not even a tag: no such manifest (a PUT of it is TAG_INVALID).
        ("/v2/a/manifests/..", "MANIFEST_UNKNOWN"),
        ("/v2/a/manifests/-bad", "MANIFEST_UNKNOWN"),
        ("/v2/a/manifests/" + "t" * 129, "MANIFEST_UNKNOWN"),
        ("/v2/a/manifests/sha256:abc", "DIGEST_INVALID"),
        ("/v2/a/blobs/sha256:..", "DIGEST_INVALID"),
        ("/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", "DIGEST_INVALID"),
        ("/v2/a/referrers/nodigest", "DIGEST_INVALID"),
        ("/v2/a/blobs/uploads/..", "BLOB_UPLOAD_UNKNOWN"),
        # An encoded slash is decoded before routing, so it splits the segment: no route, 404.
        ("/v2/a/blobs/uploads/..%2F..%2Fescape", "UNSUPPORTED"),
        ("/v2/a/blobs/uploads/00000000-0000-0000-0000-000000000000", "BLOB_UPLOAD_UNKNOWN"),
    ],
)
def test_bad_names_references_and_ids_have_their_error_code(sandbox: Sandbox, target: str, code: str) -> None:
    status, body = raw_request(sandbox.server, "GET", target)
    assert 400 <= status < 500
    assert httpx.Response(status, content=body).json()["errors"][0]["code"] == code


def test_upload_id_of_another_repository_is_unknown(server: RunningServe) -> None:
    with httpx.Client(base_url=server.url) as client:
        location = client.post("/v2/one/blobs/uploads/").headers["location"]
        upload_id = location.rsplit("/", 1)[1]
        for method in ("GET", "PATCH", "DELETE"):
            response = client.request(method, f"/v2/two/blobs/uploads/{upload_id}")
            assert response.status_code == 404
            assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert client.get(location).status_code == 204
