"""The blob push APIs as the development conformance suite drives them (distribution-spec main,
conformance/api.go: BlobPostOnly, BlobPostPut, BlobPatchChunked, BlobPatchStream, BlobPostCancel, BlobMount).

Each function pushes ``blob`` to ``name`` one way and asserts every answer on the way; with ``bad_digest`` the
digest sent is not the bytes', and the closing request must be refused (400 DIGEST_INVALID here). Where the suite
accepts a fallback (202 to a POST carrying the blob, then a PUT), the answer regtool gives is asserted exactly.
"""

from __future__ import annotations

import hashlib

import httpx

from tests.conformance.steps import error_code, relative_location, with_query

__all__ = [
    "CHUNK_MIN",
    "Blob",
    "mount",
    "post_cancel",
    "post_only",
    "post_put",
    "push_chunked",
    "push_stream",
    "verify_pushed",
]

OCTET = "application/octet-stream"
# The suite's smallest chunk (config.go's chunkMin).
CHUNK_MIN = 1024


class Blob:
    """Bytes and the digest sent for them (``sent_digest`` differs when a test corrupts the bytes)."""

    def __init__(self, data: bytes, algorithm: str = "sha256", *, corrupt: bool = False) -> None:
        self.digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        # The suite appends "oh no" after computing the digest: the bytes sent no longer match it.
        self.data = data + b"oh no" if corrupt else data


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert error_code(response) == "DIGEST_INVALID"


def verify_pushed(client: httpx.Client, response: httpx.Response, blob: Blob) -> None:
    """The suite's VerifyDigest and BlobVerifyLocation: the digest header, and the Location serves the bytes."""
    assert response.headers["docker-content-digest"] == blob.digest
    fetched = client.get(relative_location(response))
    assert fetched.status_code == 200
    assert fetched.content == blob.data


def post_only(client: httpx.Client, name: str, blob: Blob, *, bad_digest: bool = False) -> None:
    response = client.post(
        with_query(f"/v2/{name}/blobs/uploads/", digest=blob.digest),
        headers={"Content-Type": OCTET, "Content-Length": str(len(blob.data))},
        content=blob.data,
    )
    if bad_digest:
        _refused(response)
        return
    assert response.status_code == 201, response.text
    verify_pushed(client, response, blob)


def post_put(client: httpx.Client, name: str, blob: Blob, *, bad_digest: bool = False) -> None:
    started = client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202
    response = client.put(
        with_query(relative_location(started), digest=blob.digest),
        headers={"Content-Type": OCTET, "Content-Length": str(len(blob.data))},
        content=blob.data,
    )
    if bad_digest:
        _refused(response)
        return
    assert response.status_code == 201, response.text
    verify_pushed(client, response, blob)


def _chunk_size(blob: Blob, min_length: str | None) -> int:
    size = len(blob.data) // 3 + 1
    if min_length is not None:
        size = max(size, int(min_length))
    return min(max(size, CHUNK_MIN), len(blob.data))


def push_chunked(
    client: httpx.Client,
    name: str,
    blob: Blob,
    *,
    put_last_chunk: bool = False,
    out_of_order: bool = False,
    bad_digest: bool = False,
) -> str | None:
    """BlobPatchChunked: chunks of a third (at least the registry's OCI-Chunk-Min-Length), each PATCHed with its
    Content-Range, or the last one in the closing PUT; ``out_of_order`` first sends each chunk's successor (416),
    then finds the session's progress with a GET. Returns the OCI-Chunk-Min-Length the registry announced."""
    started = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert started.status_code == 202
    min_length: str | None = started.headers.get("oci-chunk-min-length")
    chunk = _chunk_size(blob, min_length)
    location = relative_location(started)
    data, last = blob.data, -1
    response = started
    while last < len(data) - 1:
        if out_of_order:
            bad_start = last + 1 + chunk
            if bad_start >= len(data):
                bad_start = 0
            bad_last = min(bad_start + chunk - 1, len(data) - 1)
            closing = put_last_chunk and bad_last == len(data) - 1
            skipped = client.request(
                "PUT" if closing else "PATCH",
                with_query(location, digest=blob.digest) if closing else location,
                headers={"Content-Type": OCTET, "Content-Range": f"{bad_start}-{bad_last}"},
                content=data[bad_start : bad_last + 1],
            )
            assert skipped.status_code == 416, skipped.text
            progress = client.get(location)
            assert progress.status_code == 204
            assert progress.headers["range"] == f"0-{max(last, 0)}"
            location = relative_location(progress)
        start = last + 1
        last = min(start + chunk - 1, len(data) - 1)
        closing = put_last_chunk and last == len(data) - 1
        response = client.request(
            "PUT" if closing else "PATCH",
            with_query(location, digest=blob.digest) if closing else location,
            headers={"Content-Type": OCTET, "Content-Range": f"{start}-{last}"},
            content=data[start : last + 1],
        )
        if closing:
            break
        assert response.status_code == 202, response.text
        assert response.headers["range"] == f"0-{last}"
        location = relative_location(response)
    if not put_last_chunk:
        response = client.put(
            with_query(location, digest=blob.digest), headers={"Content-Type": OCTET, "Content-Length": "0"}
        )
    if bad_digest:
        _refused(response)
        return min_length
    assert response.status_code == 201, response.text
    verify_pushed(client, response, blob)
    return min_length


def push_stream(client: httpx.Client, name: str, blob: Blob, *, bad_digest: bool = False) -> None:
    """BlobPatchStream: one PATCH without Content-Range, then an empty PUT with the digest."""
    started = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert started.status_code == 202
    patched = client.patch(relative_location(started), headers={"Content-Type": OCTET}, content=blob.data)
    assert patched.status_code == 202, patched.text
    response = client.put(
        with_query(relative_location(patched), digest=blob.digest),
        headers={"Content-Type": OCTET, "Content-Length": "0"},
    )
    if bad_digest:
        _refused(response)
        return
    assert response.status_code == 201, response.text
    verify_pushed(client, response, blob)


def post_cancel(client: httpx.Client, name: str) -> None:
    """BlobPostCancel: a session DELETEd is gone (204), and asking about it again is 404 BLOB_UPLOAD_UNKNOWN."""
    started = client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202
    location = relative_location(started)
    assert client.delete(location).status_code == 204
    again = client.get(location)
    assert again.status_code == 404
    assert error_code(again) == "BLOB_UPLOAD_UNKNOWN"


def mount(client: httpx.Client, name: str, source: str | None, blob: Blob, *, expect_mounted: bool) -> None:
    """BlobMount: POST ?mount=&from=; 201 when the source has the blob, else a 202 session that the blob is then
    PUT into (the suite's fallback)."""
    params = {"mount": blob.digest} if source is None else {"mount": blob.digest, "from": source}
    response = client.post(f"/v2/{name}/blobs/uploads/", params=params)
    assert response.headers["location"]
    if expect_mounted:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 202, response.text
        response = client.put(
            with_query(relative_location(response), digest=blob.digest),
            headers={"Content-Type": OCTET, "Content-Length": str(len(blob.data))},
            content=blob.data,
        )
        assert response.status_code == 201, response.text
    verify_pushed(client, response, blob)
