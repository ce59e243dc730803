"""The v1 session logic that a real serve cannot be made to show on demand: other endpoints, tokens, Basic auth,
checksum header spellings. pytest-httpx stands in for the registry here; everything else uses a real serve."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from regtool.client.net.retry import RetryPolicy
from regtool.client.v1.api import V1Api, parse_endpoints, parse_payload_checksums
from regtool.client.v1.pull import pull_v1
from regtool.client.v2.api import RegistryAPI
from regtool.errors import IntegrityError, ProtocolError
from regtool.image.oci_layout import OciLayout
from regtool.reference import Reference

pytestmark = pytest.mark.anyio

INDEX = "http://index.test"
MIRROR = "http://mirror.test:5001"
IMAGE = "a" * 64
IMAGE_JSON = json.dumps({"id": IMAGE, "created": "2014-01-01T00:00:00Z"}).encode()
LAYER = b"not really a tar, and that is fine: it is stored as a plain layer"
PAYLOAD = "sha256:" + hashlib.sha256(IMAGE_JSON + b"\n" + LAYER).hexdigest()


def test_parse_endpoints() -> None:
    assert parse_endpoints(["a.test:5000, b.test", "a.test:5000"], "https") == ["https://a.test:5000", "https://b.test"]
    assert parse_endpoints(["http://c.test/v1/"], "https") == ["http://c.test"]
    assert parse_endpoints([""], "http") == []


def test_parse_payload_checksums() -> None:
    one = "sha256:" + "1" * 64
    two = "sha256:" + "2" * 64
    assert parse_payload_checksums([one]) == {one}
    assert parse_payload_checksums([json.dumps([one, two])]) == {one, two}
    assert parse_payload_checksums(["tarsum+sha256:abc", "[not json"]) == frozenset()
    assert parse_payload_checksums(["[" * 20_000]) == frozenset()


@pytest.mark.parametrize(
    ("status", "headers", "body", "found"),
    [
        (200, {}, b"{}", True),
        (200, {"Content-Type": "text/html"}, b"<html>a web server answers everything</html>", False),
        (404, {"X-Docker-Registry-Version": "0.9.1"}, b"", True),
        (200, {}, b"[" * 20_000, False),
    ],
)
async def test_ping_needs_json_or_a_v1_header(
    httpx_mock: HTTPXMock, status: int, headers: dict[str, str], body: bytes, found: bool
) -> None:
    httpx_mock.add_response(url=f"{INDEX}/v1/_ping", status_code=status, headers=headers, content=body)
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX)
        assert (await api.ping()).found is found


async def test_json_nested_too_deeply_is_a_protocol_error(httpx_mock: HTTPXMock) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    httpx_mock.add_response(url=f"{INDEX}/v1/repositories/app/images", content=deep)
    httpx_mock.add_response(url=f"{INDEX}/v1/repositories/library/app/tags/1", content=deep)
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX)
        with pytest.raises(ProtocolError, match="images list is not JSON"):
            await api.repository_images("app")
        with pytest.raises(ProtocolError, match="did not answer JSON"):
            await api.tag("app", "1")


def registry(httpx_mock: HTTPXMock, checksum_header: tuple[str, str] | None) -> None:
    token = 'Token signature=abc,repository="library/app",access=read'
    httpx_mock.add_response(url=f"{INDEX}/v1/_ping", json={}, headers={"X-Docker-Registry-Version": "0.9.1"})
    httpx_mock.add_response(
        url=f"{INDEX}/v1/repositories/app/images",
        json=[{"id": IMAGE}],
        headers={"X-Docker-Token": token, "X-Docker-Endpoints": "mirror.test:5001"},
    )
    httpx_mock.add_response(url=f"{MIRROR}/v1/repositories/library/app/tags/1", json=IMAGE)
    httpx_mock.add_response(url=f"{MIRROR}/v1/images/{IMAGE}/ancestry", json=[IMAGE])
    headers = {"X-Docker-Size": str(len(LAYER))}
    if checksum_header is not None:
        headers[checksum_header[0]] = checksum_header[1]
    httpx_mock.add_response(url=f"{MIRROR}/v1/images/{IMAGE}/json", content=IMAGE_JSON, headers=headers)
    httpx_mock.add_response(url=f"{MIRROR}/v1/images/{IMAGE}/layer", content=LAYER)


@pytest.mark.parametrize(
    "header",
    [
        ("X-Docker-Payload-Checksum", PAYLOAD),
        ("X-Docker-Checksum-Payload", json.dumps([PAYLOAD])),
        None,
    ],
)
async def test_session_follows_endpoints_and_sends_the_token_back(
    httpx_mock: HTTPXMock, tmp_path: Path, header: tuple[str, str] | None
) -> None:
    registry(httpx_mock, header)
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX, username="u", password="p")
        outcome = await pull_v1(api, Reference.parse("index.test/app:1"), tmp_path / "out")
    assert outcome.image_id == IMAGE
    images = httpx_mock.get_request(url=f"{INDEX}/v1/repositories/app/images")
    assert images is not None
    assert images.headers["X-Docker-Token"] == "true"
    assert images.headers["Authorization"].startswith("Basic ")
    tag = httpx_mock.get_request(url=f"{MIRROR}/v1/repositories/library/app/tags/1")
    assert tag is not None
    assert tag.headers["Authorization"] == 'Token Token signature=abc,repository="library/app",access=read'
    layout = OciLayout.open(tmp_path / "out")
    (layer,) = layout.manifest(layout.resolve("1")).layers
    assert layout.read_blob(layer.digest) == LAYER


async def test_a_wrong_checksum_header_fails(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    registry(httpx_mock, ("X-Docker-Checksum-Payload", "sha256:" + "0" * 64))
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX)
        with pytest.raises(IntegrityError, match=f"v1 layer {IMAGE} from {MIRROR}: payload checksum mismatch"):
            await pull_v1(api, Reference.parse("index.test/app:1"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


async def test_push_requires_endpoints(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{INDEX}/v1/repositories/app/", method="PUT", json="")
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX)
        with pytest.raises(ProtocolError, match="didn't contain any endpoints"):
            await api.put_repository("app", [{"id": IMAGE, "Tag": "1"}])


class _Broken(httpx.AsyncByteStream):
    """A body that sends ``data`` and then fails like a dropped connection."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset by peer")


def chain_without_layer(httpx_mock: HTTPXMock, *, token: bool, layer: bytes = LAYER) -> None:
    headers = {"X-Docker-Endpoints": "mirror.test:5001"}
    if token:
        headers["X-Docker-Token"] = "Token signature=abc"
    checksum = "sha256:" + hashlib.sha256(IMAGE_JSON + b"\n" + layer).hexdigest()
    httpx_mock.add_response(url=f"{INDEX}/v1/_ping", json={})
    httpx_mock.add_response(url=f"{INDEX}/v1/repositories/app/images", json=[{"id": IMAGE}], headers=headers)
    httpx_mock.add_response(url=f"{MIRROR}/v1/repositories/library/app/tags/1", json=IMAGE)
    httpx_mock.add_response(url=f"{MIRROR}/v1/images/{IMAGE}/ancestry", json=[IMAGE])
    httpx_mock.add_response(
        url=f"{MIRROR}/v1/images/{IMAGE}/json", content=IMAGE_JSON, headers={"X-Docker-Checksum-Payload": checksum}
    )


async def test_a_broken_layer_body_resumes_with_a_range(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    layer = bytes(range(256)) * 6000  # ~1.5 MiB: the client writes in 1 MiB pieces
    chain_without_layer(httpx_mock, token=True, layer=layer)
    written = 1 << 20
    httpx_mock.add_response(
        url=f"{MIRROR}/v1/images/{IMAGE}/layer",
        headers={"Accept-Ranges": "bytes", "Content-Length": str(len(layer))},
        stream=_Broken(layer[: written + 10]),
        match_headers={"Authorization": "Token Token signature=abc"},
        is_reusable=False,
    )
    httpx_mock.add_response(
        url=f"{MIRROR}/v1/images/{IMAGE}/layer",
        status_code=206,
        headers={"Content-Range": f"bytes {written}-{len(layer) - 1}/{len(layer)}"},
        content=layer[written:],
        match_headers={"Range": f"bytes={written}-"},
    )
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX)
        await pull_v1(api, Reference.parse("index.test/app:1"), tmp_path / "out")
    layout = OciLayout.open(tmp_path / "out")
    (stored,) = layout.manifest(layout.resolve("1")).layers
    assert layout.read_blob(stored.digest, max_size=4 << 20) == layer


async def test_basic_credentials_never_leave_the_index(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    chain_without_layer(httpx_mock, token=False)
    httpx_mock.add_response(url=f"{MIRROR}/v1/images/{IMAGE}/layer", content=LAYER)
    async with httpx.AsyncClient() as http:
        api = V1Api(RegistryAPI(http, retry=RetryPolicy(total=0)), INDEX, username="u", password="secret")
        await pull_v1(api, Reference.parse("index.test/app:1"), tmp_path / "out")
    for request in httpx_mock.get_requests():
        if request.url.host == "mirror.test":
            assert "Authorization" not in request.headers
        elif request.url.path.endswith("/images"):
            assert request.headers["Authorization"].startswith("Basic ")
