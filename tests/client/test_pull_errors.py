"""Pull failures a real registry will not produce on demand, over real sockets (the threaded blob path).

Each test scripts a fake registry serving a small image, breaks one thing, and checks the error class, that the
message names the blob and the registry URL, and that nothing of the broken blob is left in the destination.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.digest import Digest
from regtool.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    ProtocolError,
    TransportError,
    UnsupportedProtocolError,
)
from regtool.reference import Reference
from tests.client.fakeregistry import V2_HEADER, FakeRegistry, Reply, fake_registry
from tests.support.images import BuiltImage, image_manifest

pytestmark = pytest.mark.anyio


def _image() -> BuiltImage:
    return image_manifest([{"a.txt": b"alpha" * 300}, {"b.bin": random.Random(3).randbytes(40_000)}])


def _serve(fake: FakeRegistry, image: BuiltImage, repo: str = "team/app", tag: str = "1") -> None:
    headers = {
        **V2_HEADER,
        "Content-Type": image.manifest.media_type,
        "Docker-Content-Digest": str(image.manifest.digest),
    }
    fake.route("GET", f"/v2/{repo}/manifests/{tag}", Reply(200, headers, image.manifest.raw))
    fake.route("GET", f"/v2/{repo}/manifests/{image.manifest.digest}", Reply(200, headers, image.manifest.raw))
    for digest, data in image.blobs.items():
        fake.route("GET", f"/v2/{repo}/blobs/{digest}", Reply(200, {**V2_HEADER}, data))


def _assert_nothing_of(dest: Path, digest: Digest) -> None:
    assert not (dest / "blobs" / "sha256" / digest.encoded).exists()
    staging = dest / ".regtool-staging"
    if staging.exists():
        assert not [p for p in staging.iterdir() if digest.encoded in p.name]
    if (dest / "index.json").exists():
        assert json.loads((dest / "index.json").read_text())["manifests"] == []


async def _pull(fake: FakeRegistry, dest: Path, ref: str = "team/app:1", **kwargs: object) -> object:
    async with Client(retries=1) as client:
        client.api.retry = client.api.retry.__class__(total=1, backoff_factor=0.01)
        return await client.pull(Reference.parse(f"{fake.host}/{ref}"), dest, **kwargs)  # type: ignore[arg-type]


async def test_blob_digest_mismatch(tmp_path: Path) -> None:
    image = _image()
    layer = image.manifest.layers[1]
    with fake_registry() as fake:
        _serve(fake, image)
        forged = bytearray(image.blobs[layer.digest])
        forged[10] ^= 0xFF
        fake.route("GET", f"/v2/team/app/blobs/{layer.digest}", Reply(200, {}, bytes(forged)))
        with pytest.raises(IntegrityError) as caught:
            await _pull(fake, tmp_path / "out")
    message = str(caught.value)
    assert str(layer.digest) in message and fake.host in message and "digest mismatch" in message
    _assert_nothing_of(tmp_path / "out", layer.digest)


async def test_truncated_body_is_retried_then_refused(tmp_path: Path) -> None:
    image = _image()
    layer = image.manifest.layers[1]
    with fake_registry() as fake:
        _serve(fake, image)
        data = image.blobs[layer.digest]
        fake.route("GET", f"/v2/team/app/blobs/{layer.digest}", Reply(200, {}, data, close_after=len(data) // 2))
        with pytest.raises(TransportError) as caught:
            await _pull(fake, tmp_path / "out")
        gets = [r for r in fake.requests if r[1].endswith(str(layer.digest))]
    # A body cut short is a network failure (issue 6): retried with a Range, then a TransportError naming the
    # blob and the URL; the bytes received stay in staging for a later resume, never in blobs/.
    assert str(layer.digest) in str(caught.value) and fake.host in str(caught.value)
    assert len(gets) == 2  # the first attempt and one retry (retries=1), the retry resuming with a Range
    assert gets[1][2].get("range") == f"bytes={len(data) // 2}-"
    assert not (tmp_path / "out" / "blobs" / "sha256" / layer.digest.encoded).exists()


async def test_truncated_body_resumes_with_range(tmp_path: Path) -> None:
    image = _image()
    layer = image.manifest.layers[1]
    data = image.blobs[layer.digest]
    calls: list[str | None] = []

    def blob(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        calls.append(headers.get("range"))
        if "range" not in headers:
            return Reply(200, {}, data, close_after=1000)
        start = int(headers["range"].removeprefix("bytes=").rstrip("-"))
        return Reply(206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}, data[start:])

    with fake_registry() as fake:
        _serve(fake, image)
        fake.route("GET", f"/v2/team/app/blobs/{layer.digest}", blob)
        result = await _pull(fake, tmp_path / "out")
    assert calls == [None, "bytes=1000-"]
    assert (tmp_path / "out" / "blobs" / "sha256" / layer.digest.encoded).read_bytes() == data
    assert result.blobs_downloaded == 3  # type: ignore[attr-defined]


async def test_wrong_content_length(tmp_path: Path) -> None:
    image = _image()
    layer = image.manifest.layers[0]
    with fake_registry() as fake:
        _serve(fake, image)
        data = image.blobs[layer.digest]
        fake.route("GET", f"/v2/team/app/blobs/{layer.digest}", Reply(200, {}, data[:-5]))
        with pytest.raises(IntegrityError) as caught:
            await _pull(fake, tmp_path / "out")
    assert "Content-Length" in str(caught.value) and str(layer.digest) in str(caught.value)
    _assert_nothing_of(tmp_path / "out", layer.digest)


async def test_manifest_by_digest_is_verified(tmp_path: Path) -> None:
    image = _image()
    other = image_manifest([{"x": b"y"}])
    with fake_registry() as fake:
        _serve(fake, image)
        # The registry answers the digest of `image` with the bytes of `other`.
        fake.route(
            "GET",
            f"/v2/team/app/manifests/{image.manifest.digest}",
            Reply(200, {"Content-Type": mt.OCI_MANIFEST}, other.manifest.raw),
        )
        with pytest.raises(IntegrityError) as caught:
            await _pull(fake, tmp_path / "out", ref=f"team/app@{image.manifest.digest}")
    assert str(image.manifest.digest) in str(caught.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out" / "blobs" / "sha256").iterdir())


@pytest.mark.parametrize(("code", "status"), [("NAME_UNKNOWN", 404), ("MANIFEST_UNKNOWN", 404)])
async def test_unknown_name_or_manifest(tmp_path: Path, code: str, status: int) -> None:
    envelope = json.dumps({"errors": [{"code": code, "message": "nope", "detail": {}}]}).encode()
    with fake_registry() as fake:
        fake.route(
            "GET",
            "/v2/team/app/manifests/1",
            Reply(status, {**V2_HEADER, "Content-Type": "application/json"}, envelope),
        )
        with pytest.raises(NotFoundError) as caught:
            await _pull(fake, tmp_path / "out")
    assert code in str(caught.value) and "team/app:1" in str(caught.value) and fake.host in str(caught.value)


async def test_media_type_disagreeing_with_content_type(tmp_path: Path) -> None:
    image = _image()
    with fake_registry() as fake:
        fake.route(
            "GET", "/v2/team/app/manifests/1", Reply(200, {"Content-Type": mt.DOCKER_MANIFEST_V2}, image.manifest.raw)
        )
        with pytest.raises(ProtocolError) as caught:
            await _pull(fake, tmp_path / "out")
    assert "disagrees" in str(caught.value)


async def test_registry_ignoring_accept_with_generic_content_type(tmp_path: Path) -> None:
    image = _image()
    with fake_registry() as fake:
        _serve(fake, image)
        fake.route(
            "GET", "/v2/team/app/manifests/1", Reply(200, {"Content-Type": "application/json"}, image.manifest.raw)
        )
        result = await _pull(fake, tmp_path / "out")
        accept = next(r[2]["accept"] for r in fake.requests if r[1] == "/v2/team/app/manifests/1")
    assert result.digest == image.manifest.digest  # type: ignore[attr-defined]
    assert mt.OCI_INDEX in accept and mt.DOCKER_MANIFEST_V2 in accept and mt.OCI_MANIFEST in accept


async def test_registry_answering_schema1_is_refused_clearly(tmp_path: Path) -> None:
    schema1 = json.dumps(
        {"schemaVersion": 1, "name": "team/app", "tag": "1", "fsLayers": [{"blobSum": str(Digest.of(b"x"))}]}
    ).encode()
    with fake_registry() as fake:
        fake.route("GET", "/v2/team/app/manifests/1", Reply(200, {"Content-Type": mt.DOCKER_SCHEMA1}, schema1))
        with pytest.raises(UnsupportedProtocolError) as caught:
            await _pull(fake, tmp_path / "out", protocol="v2")
    assert "schema1" in str(caught.value)


async def test_429_with_retry_after_is_retried(tmp_path: Path) -> None:
    image = _image()
    layer = image.manifest.layers[0]
    data = image.blobs[layer.digest]
    manifest_calls: list[int] = []
    blob_calls: list[int] = []
    headers = {"Content-Type": image.manifest.media_type}

    def manifest(method: str, path: str, h: dict[str, str], body: bytes) -> Reply:
        manifest_calls.append(1)
        if len(manifest_calls) == 1:
            return Reply(429, {"Retry-After": "0"}, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')
        return Reply(200, headers, image.manifest.raw)

    def blob(method: str, path: str, h: dict[str, str], body: bytes) -> Reply:
        blob_calls.append(1)
        if len(blob_calls) == 1:
            return Reply(429, {"Retry-After": "0"}, b"")
        return Reply(200, {}, data)

    with fake_registry() as fake:
        _serve(fake, image)
        fake.route("GET", "/v2/team/app/manifests/1", manifest)
        fake.route("GET", f"/v2/team/app/blobs/{layer.digest}", blob)
        result = await _pull(fake, tmp_path / "out")
    assert len(manifest_calls) == 2 and len(blob_calls) == 2
    assert result.blobs_downloaded == 3  # type: ignore[attr-defined]


async def test_429_until_retries_run_out(tmp_path: Path) -> None:
    with fake_registry() as fake:
        fake.route(
            "GET",
            "/v2/team/app/manifests/1",
            Reply(429, {"Retry-After": "0"}, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow"}]}'),
        )
        with pytest.raises(Exception) as caught:
            await _pull(fake, tmp_path / "out")
        calls = [r for r in fake.requests if r[1] == "/v2/team/app/manifests/1"]
    assert "TOOMANYREQUESTS" in str(caught.value) and getattr(caught.value, "status", None) == 429
    assert len(calls) == 2


async def test_bearer_token_flow_for_manifest_and_threaded_blobs(tmp_path: Path) -> None:
    image = _image()
    token_requests: list[str] = []

    def guarded(reply_for: dict[str, Reply]):  # type: ignore[no-untyped-def]
        def handler(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            if headers.get("authorization") != "Bearer tok-1":
                challenge = f'Bearer realm="{fake.url}/token",service="fake",scope="repository:team/app:pull"'
                return Reply(
                    401,
                    {**V2_HEADER, "WWW-Authenticate": challenge},
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}',
                )
            return reply_for[path.split("?")[0]]

        return handler

    def token(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        token_requests.append(path)
        return Reply(
            200, {"Content-Type": "application/json"}, json.dumps({"access_token": "tok-1", "expires_in": 300}).encode()
        )

    with fake_registry() as fake:
        headers = {"Content-Type": image.manifest.media_type}
        replies = {"/v2/team/app/manifests/1": Reply(200, headers, image.manifest.raw)}
        replies.update({f"/v2/team/app/blobs/{d}": Reply(200, {}, data) for d, data in image.blobs.items()})
        for path in replies:
            fake.route("GET", path, guarded(replies))
            fake.route("HEAD", path, guarded(replies))
        fake.route("GET", "/token", token)
        result = await _pull(fake, tmp_path / "out")
    assert result.blobs_downloaded == 3  # type: ignore[attr-defined]
    assert token_requests == ["/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull"]


async def test_auth_refused_is_auth_error(tmp_path: Path) -> None:
    with fake_registry() as fake:
        fake.route(
            "GET",
            "/v2/team/app/manifests/1",
            Reply(
                401,
                {**V2_HEADER, "WWW-Authenticate": 'Basic realm="x"'},
                b'{"errors":[{"code":"UNAUTHORIZED","message":"login please"}]}',
            ),
        )
        with pytest.raises(AuthError) as caught:
            await _pull(fake, tmp_path / "out")
    assert "UNAUTHORIZED" in str(caught.value)


def test_anyio_backend_is_asyncio(anyio_backend: str) -> None:
    assert anyio_backend == "asyncio"
    assert anyio.get_all_backends()
