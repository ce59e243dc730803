"""The development conformance suite's blob checks (distribution-spec main, conformance/run.go TestBlobAPIs), per
digest algorithm and storage driver: every push API, HEAD and GET of each result, deletes, range requests, the
empty blobs, and each push API refusing bytes that do not match their digest.

The released suite (v1.1.1, ``workflows.py``) is the one the issue names; this adds what its successor checks
beyond it: sha512 content, chunked uploads in several and out-of-order chunks, the last chunk in the PUT,
cancelled sessions, mounts without ``from``, Range GETs and digest mismatches on every path.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest

from tests.conformance.blobapis import (
    CHUNK_MIN,
    Blob,
    mount,
    post_cancel,
    post_only,
    post_put,
    push_chunked,
    push_stream,
)
from tests.conformance.steps import NAMESPACE, error_code, step

REPO, REPO2 = NAMESPACE, "conformance/repo2"
ALGORITHMS = ["sha256", "sha512"]


def _head_and_get(client: httpx.Client, name: str, blob: Blob) -> None:
    head = client.head(f"/v2/{name}/blobs/{blob.digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(blob.data))
    first = head.history[0] if head.history else head
    assert first.headers["docker-content-digest"] == blob.digest
    got = client.get(f"/v2/{name}/blobs/{blob.digest}")
    assert got.status_code == 200
    assert got.content == blob.data


def _delete(client: httpx.Client, name: str, blob: Blob) -> None:
    assert client.delete(f"/v2/{name}/blobs/{blob.digest}").status_code == 202
    gone = client.get(f"/v2/{name}/blobs/{blob.digest}")
    assert gone.status_code == 404
    assert error_code(gone) == "BLOB_UNKNOWN"


def _min_chunk(client: httpx.Client) -> int:
    """The suite's "chunked single" push learns the registry's OCI-Chunk-Min-Length (at least its own 1024)."""
    blob = Blob(os.urandom(512))
    announced = push_chunked(client, REPO, blob)
    _head_and_get(client, REPO, blob)
    _delete(client, REPO, blob)
    return max(CHUNK_MIN, int(announced)) if announced else CHUNK_MIN


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_blob_push_apis(client: httpx.Client, algorithm: str) -> None:
    with step("get-missing"):
        missing = Blob(os.urandom(512), algorithm)
        assert client.get(f"/v2/{REPO}/blobs/{missing.digest}").status_code == 404
    with step("chunked single"):
        minimum = _min_chunk(client)
    pushes: dict[str, Callable[[Blob], object]] = {
        "post only": lambda blob: post_only(client, REPO, blob),
        "post+put": lambda blob: post_put(client, REPO, blob),
        "stream": lambda blob: push_stream(client, REPO, blob),
        "chunked multi": lambda blob: push_chunked(client, REPO, blob),
        "chunked multi and put chunk": lambda blob: push_chunked(client, REPO, blob, put_last_chunk=True),
        "chunked out-of-order": lambda blob: push_chunked(client, REPO, blob, out_of_order=True),
        "chunked out-of-order and put chunk": lambda blob: push_chunked(
            client, REPO, blob, put_last_chunk=True, out_of_order=True
        ),
    }
    for name, push in pushes.items():
        with step(name):
            size = minimum * 3 - 5 if name.startswith("chunked") else 512
            blob = Blob(os.urandom(size), algorithm)
            push(blob)
            _head_and_get(client, REPO, blob)
            _delete(client, REPO, blob)
    with step("post cancel"):
        post_cancel(client, REPO)
    with step("mount"):
        blob = Blob(os.urandom(512), algorithm)
        post_put(client, REPO2, blob)
        mount(client, REPO, REPO2, blob, expect_mounted=True)
        _head_and_get(client, REPO, blob)
        _delete(client, REPO, blob)
        _delete(client, REPO2, blob)
    with step("mount anonymous"):
        # regtool mounts only from a named repository: without ``from`` it opens a session (the suite's fallback).
        blob = Blob(os.urandom(512), algorithm)
        post_put(client, REPO2, blob)
        mount(client, REPO, None, blob, expect_mounted=False)
        _head_and_get(client, REPO, blob)
        _delete(client, REPO, blob)
        _delete(client, REPO2, blob)
    with step("mount missing"):
        blob = Blob(os.urandom(512), algorithm)
        mount(client, REPO, REPO2, blob, expect_mounted=False)
        _delete(client, REPO, blob)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_blob_range_requests(client: httpx.Client, algorithm: str) -> None:
    blob = Blob(os.urandom(2048), algorithm)
    post_put(client, REPO, blob)
    url = f"/v2/{REPO}/blobs/{blob.digest}"
    for spec, first, last in (
        ("500-1499", 500, 1499),
        ("500-", 500, 2047),
        ("-500", 1548, 2047),
        ("2000-5000", 2000, 2047),
    ):
        with step(f"range {spec}"):
            response = client.get(url, headers={"Range": f"bytes={spec}"})
            assert response.status_code == 206
            assert response.content == blob.data[first : last + 1]
            assert response.headers["content-length"] == str(last - first + 1)
            assert response.headers["content-range"] == f"bytes {first}-{last}/2048"
    for spec in ("500-0", "5000-10000"):
        with step(f"range {spec}"):
            assert client.get(url, headers={"Range": f"bytes={spec}"}).status_code == 416
    _delete(client, REPO, blob)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_well_known_blob_contents(client: httpx.Client, algorithm: str) -> None:
    for label, data in (("empty", b""), ("emptyJSON", b"{}")):
        with step(label):
            blob = Blob(data, algorithm)
            post_put(client, REPO, blob)
            _head_and_get(client, REPO, blob)
            _delete(client, REPO, blob)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_push_api_refuses_a_bad_digest(client: httpx.Client, algorithm: str) -> None:
    minimum = _min_chunk(client)
    pushes: dict[str, Callable[[Blob], object]] = {
        "bad digest post only": lambda blob: post_only(client, REPO, blob, bad_digest=True),
        "bad digest post+put": lambda blob: post_put(client, REPO, blob, bad_digest=True),
        "bad digest chunked": lambda blob: push_chunked(client, REPO, blob, bad_digest=True),
        "bad digest chunked and put chunk": lambda blob: push_chunked(
            client, REPO, blob, put_last_chunk=True, bad_digest=True
        ),
        "bad digest stream": lambda blob: push_stream(client, REPO, blob, bad_digest=True),
    }
    for name, push in pushes.items():
        with step(name):
            blob = Blob(os.urandom(minimum * 3 - 5), algorithm, corrupt=True)
            push(blob)
            # Nothing was stored under the digest claimed.
            assert client.head(f"/v2/{REPO}/blobs/{blob.digest}").status_code == 404
