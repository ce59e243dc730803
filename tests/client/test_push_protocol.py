"""Push against a scripted registry: Location forms, 307 on upload, chunked PATCH, bearer auth, error mapping."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.errors import AuthError, IntegrityError
from regtool.reference import Reference
from tests.client.fakeregistry import V2_HEADER, FakeRegistry, Reply, fake_registry
from tests.support.images import BuiltImage, write_image

pytestmark = pytest.mark.anyio


class _Uploads:
    """A minimal upload endpoint: sessions, chunks, 307 hops, and what finally got stored."""

    def __init__(self, fake: FakeRegistry, *, absolute: bool, redirect_put: bool, token: str | None = None) -> None:
        self.fake = fake
        self.absolute = absolute
        self.redirect_put = redirect_put
        self.token = token
        self.sessions: dict[str, bytearray] = {}
        self.stored: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.redirected = 0
        fake.routes[("POST", "/v2/team/app/blobs/uploads/")] = self.post
        for method in ("PUT", "PATCH"):
            for n in range(40):
                fake.routes[(method, f"/v2/team/app/blobs/uploads/s{n}")] = self.session
                fake.routes[(method, f"/elsewhere/s{n}")] = self.session
        fake.routes[("PUT", "/v2/team/app/manifests/v")] = self.manifest

    def _denied(self, headers: dict[str, str]) -> Reply | None:
        if self.token is None or headers.get("authorization") == f"Bearer {self.token}":
            return None
        challenge = f'Bearer realm="{self.fake.url}/token",service="fake"'
        return Reply(401, {**V2_HEADER, "WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}')

    def _loc(self, path: str) -> str:
        return (self.fake.url + path) if self.absolute else path

    def post(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if (denied := self._denied(headers)) is not None:
            return denied
        uuid = f"s{len(self.sessions)}"
        self.sessions[uuid] = bytearray()
        return Reply(202, {"Location": self._loc(f"/v2/team/app/blobs/uploads/{uuid}?_state=abc"), "Range": "0-0"})

    def session(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if (denied := self._denied(headers)) is not None and not path.startswith("/elsewhere/"):
            return denied
        route, _, query = path.partition("?")
        uuid = route.rsplit("/", 1)[1]
        if method == "PUT" and self.redirect_put and not route.startswith("/elsewhere/"):
            self.redirected += 1
            return Reply(307, {"Location": f"/elsewhere/{uuid}?{query}"})
        data = self.sessions[uuid]
        if method == "PATCH":
            start, _, _ = headers["content-range"].partition("-")
            assert int(start) == len(data), "chunk out of order"
            data.extend(body)
            return Reply(
                202,
                {
                    "Location": self._loc(f"/v2/team/app/blobs/uploads/{uuid}?_state=n{len(data)}"),
                    "Range": f"0-{len(data) - 1}",
                },
            )
        assert "_state=" in query, "the Location's own query must be kept"
        data.extend(body)
        digest = dict(p.split("=", 1) for p in query.split("&"))["digest"].replace("%3A", ":")
        if str(Digest.of(bytes(data))) != digest:
            return Reply(400, {}, b'{"errors":[{"code":"DIGEST_INVALID","message":"digest mismatch"}]}')
        self.stored[digest] = bytes(data)
        return Reply(201, {"Location": f"/v2/team/app/blobs/{digest}", "Docker-Content-Digest": digest})

    def manifest(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if (denied := self._denied(headers)) is not None:
            return denied
        digest = str(Digest.of(body))
        self.manifests[headers["content-type"]] = body
        return Reply(201, {"Docker-Content-Digest": digest, "Location": f"/v2/team/app/manifests/{digest}"})


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "v", [{"a": random.Random(5).randbytes(5000)}, {"b": b"b" * 7000}])


async def _push(fake: FakeRegistry, tmp_path: Path, **kwargs: object) -> object:
    async with Client(retries=0) as client:
        return await client.push(f"{tmp_path / 'src'}:v", Reference.parse(f"{fake.host}/team/app:v"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("absolute", [True, False])
async def test_monolithic_with_relative_or_absolute_location(tmp_path: Path, absolute: bool) -> None:
    image = _image(tmp_path)
    with fake_registry() as fake:
        uploads = _Uploads(fake, absolute=absolute, redirect_put=False)
        result = await _push(fake, tmp_path)
    assert {Digest.parse(d): data for d, data in uploads.stored.items()} == image.blobs
    assert uploads.manifests == {image.manifest.media_type: image.manifest.raw}
    assert result.blobs_uploaded == 3 and result.digest == image.manifest.digest  # type: ignore[attr-defined]


async def test_307_on_upload_resends_the_body(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with fake_registry() as fake:
        uploads = _Uploads(fake, absolute=False, redirect_put=True)
        await _push(fake, tmp_path)
    assert uploads.redirected == 3
    assert {Digest.parse(d): data for d, data in uploads.stored.items()} == image.blobs


async def test_chunked_patch_sequence(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with fake_registry() as fake:
        uploads = _Uploads(fake, absolute=True, redirect_put=False)
        await _push(fake, tmp_path, chunk_size=1000)
        patches = [r for r in fake.requests if r[0] == "PATCH"]
    assert {Digest.parse(d): data for d, data in uploads.stored.items()} == image.blobs
    big = image.manifest.layers[0].size
    assert big > 5000
    assert [r[2]["content-range"] for r in patches[: big // 1000]] == [
        f"{start}-{start + 999}" for start in range(0, (big // 1000) * 1000, 1000)
    ]


async def test_bearer_auth_on_push(tmp_path: Path) -> None:
    image = _image(tmp_path)
    tokens: list[str] = []

    def token(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        tokens.append(path)
        return Reply(200, {"Content-Type": "application/json"}, json.dumps({"token": "push-token"}).encode())

    with fake_registry() as fake:
        uploads = _Uploads(fake, absolute=False, redirect_put=False, token="push-token")
        fake.route("GET", "/token", token)
        await _push(fake, tmp_path)
    assert {Digest.parse(d): data for d, data in uploads.stored.items()} == image.blobs
    assert tokens and all("scope=repository%3Ateam%2Fapp%3Apull%2Cpush" in t for t in tokens)


async def test_upload_refused_maps_the_error(tmp_path: Path) -> None:
    _image(tmp_path)
    with fake_registry() as fake:
        fake.route("POST", "/v2/team/app/blobs/uploads/", Reply(202, {"Location": "/v2/team/app/blobs/uploads/x"}))
        fake.route(
            "PUT",
            "/v2/team/app/blobs/uploads/x",
            Reply(400, {}, b'{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}'),
        )
        with pytest.raises(IntegrityError) as caught:
            await _push(fake, tmp_path)
    # The registry's DIGEST_INVALID is an integrity failure (exit 5), like the client's own digest checks.
    assert "DIGEST_INVALID" in str(caught.value) and "HTTP 400" in str(caught.value)
    assert "provided digest did not match" in str(caught.value) and fake.host in str(caught.value)


async def test_denied_push_is_auth_error(tmp_path: Path) -> None:
    _image(tmp_path)
    with fake_registry() as fake:
        fake.route(
            "POST",
            "/v2/team/app/blobs/uploads/",
            Reply(403, {}, b'{"errors":[{"code":"DENIED","message":"no push for you"}]}'),
        )
        with pytest.raises(AuthError, match="DENIED"):
            await _push(fake, tmp_path)
