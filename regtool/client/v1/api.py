"""The registry v1 HTTP API as the docker engine spoke it (protocols.md §1.2, §2.1-§2.3).

:class:`V1Api` talks to one registry (the "index") through the client's ``RegistryAPI`` (retries, error
mapping, one shared ``httpx.AsyncClient``). It keeps the session state the engine kept: the ``X-Docker-Token``
a registry hands out (sent back as ``Authorization: Token ...``) and the ``X-Docker-Endpoints`` it names (where
image and tag calls go next). Requests that carry ``X-Docker-Token: true`` get HTTP Basic auth when credentials
are set, as the engine's ``authTransport`` did.

Every method maps an error status to regtool's errors: 404 -> NotFoundError, 401/403 -> AuthError, anything
else unexpected -> RegistryError with the ``{"error": ...}`` message of the body.

>>> api = V1Api(registry_api, "http://127.0.0.1:5000")  # doctest: +SKIP
>>> await api.repository_images("team/app")             # doctest: +SKIP
>>> image_id = await api.tag("team/app", "latest")      # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from regtool.client.net.transport import mapped_errors
from regtool.client.v2.api import RegistryAPI, error_for_response
from regtool.errors import AuthError, NotFoundError, ProtocolError, RegistryError, TransportError
from regtool.protocol import v1 as p1
from regtool.protocol.ranges import range_request

__all__ = ["V1Api", "V1ImageMeta", "V1Ping", "open_session", "parse_endpoints", "parse_payload_checksums"]

_JSON_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class V1Ping:
    """What ``GET /v1/_ping`` said: status, version header, the engine's reading of standalone, and whether the
    answer looked like a v1 registry at all (a 200, or one of the v1 headers)."""

    status: int
    version: str | None
    standalone: bool
    found: bool


@dataclass(frozen=True, slots=True)
class V1ImageMeta:
    """An image JSON as served: the exact bytes, ``X-Docker-Size`` and the payload checksums it announced."""

    json: bytes
    size: int | None
    payload_checksums: frozenset[str]


def parse_endpoints(values: list[str], scheme: str) -> list[str]:
    """``X-Docker-Endpoints`` (repeatable, comma-separated ``host[:port]``) -> ``["<scheme>://host[:port]"]``."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if "://" in item:
                parts = urlsplit(item)
                base = f"{parts.scheme}://{parts.netloc}"
            else:
                base = f"{scheme}://{item.split('/', 1)[0]}"
            if base not in out:
                out.append(base)
    return out


def _loads(data: bytes | str) -> Any:
    """JSON from a registry; ValueError for anything that is not JSON (also when it nests too deeply)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def parse_payload_checksums(values: list[str]) -> frozenset[str]:
    """Payload checksum header values: a plain ``sha256:<hex>``, or a JSON list of them (docker-registry tests)."""
    out: set[str] = set()
    for value in values:
        value = value.strip()
        if value.startswith("["):
            try:
                items = _loads(value)
            except ValueError:
                continue
            if isinstance(items, list):
                out.update(str(item) for item in items if isinstance(item, str) and item.startswith("sha256:"))
        elif value.startswith("sha256:"):
            out.add(value)
    return frozenset(out)


class V1Api:
    """One v1 session against ``index_url`` (``scheme://host[:port]``), sent through ``api``."""

    def __init__(
        self,
        api: RegistryAPI,
        index_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        always_basic: bool = False,
    ) -> None:
        self._api = api
        # A standalone registry gets Basic on every request (the engine's alwaysSetBasicAuth).
        self._always_basic = always_basic
        self._http = api.http
        self.index_url = index_url.rstrip("/")
        self._scheme = urlsplit(self.index_url).scheme or "https"
        self._basic: str | None = None
        if username is not None and password is not None:
            self._basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._tokens: list[str] = []
        self.endpoints: list[str] = [self.index_url]

    # -- plumbing -------------------------------------------------------------------------------------------

    def _headers(self, url: str, extra: Mapping[str, str] | None = None, *, want_token: bool = False) -> dict[str, str]:
        # The engine's authTransport: Basic on requests asking for a token (and on all of them when no token
        # was handed out), else the cached "Authorization: Token ...". Basic credentials only ever go to the
        # index itself, never to a host that X-Docker-Endpoints named. The shared client's own auth flow is
        # switched off for v1 requests.
        headers: dict[str, str] = {}
        if want_token:
            headers[p1.TOKEN_HEADER] = "true"
        to_index = url.startswith(self.index_url + "/")
        if self._basic is not None and to_index and (want_token or not self._tokens or self._always_basic):
            headers["Authorization"] = self._basic
        elif self._tokens and not want_token:
            headers["Authorization"] = "Token " + ",".join(self._tokens)
        if extra:
            headers.update(extra)
        return headers

    def _remember_session(self, response: httpx.Response) -> None:
        token = response.headers.get(p1.TOKEN_HEADER)
        if token:
            self._tokens = [token]
        endpoints = parse_endpoints(response.headers.get_list(p1.ENDPOINTS_HEADER), self._scheme)
        if endpoints:
            self.endpoints = endpoints

    @property
    def endpoint(self) -> str:
        """Where image and tag calls go: the first ``X-Docker-Endpoints`` entry, else the index itself."""
        return self.endpoints[0]

    async def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200,),
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        want_token: bool = False,
    ) -> httpx.Response:
        return await self._api.send(
            method,
            url,
            what=what,
            headers=self._headers(url, headers, want_token=want_token),
            content=content,
            expect=ok,
            auth=False,
        )

    async def _json(self, method: str, url: str, *, what: str, **kwargs: Any) -> Any:
        response = await self._request(method, url, what=what, **kwargs)
        if len(response.content) > _JSON_LIMIT:
            raise ProtocolError(f"{what}: response of {len(response.content)} bytes is too large", status=200)
        try:
            return _loads(response.content)
        except ValueError:
            raise ProtocolError(f"{what}: {url} did not answer JSON", status=response.status_code) from None

    # -- read side (pull, §2.2) -------------------------------------------------------------------------------

    async def ping(self) -> V1Ping:
        """``GET /v1/_ping``. The engine ignores the status; ``found`` says whether it looked like v1 at all: a 200
        with a JSON body, or one of the v1 headers (protocols.md §3), so a web server's 200 page is no v1."""
        url = self.index_url + p1.path("ping")
        response = await self._request("GET", url, what="v1 ping", ok=tuple(range(100, 600)))
        version = response.headers.get(p1.VERSION_HEADER)
        standalone_header = response.headers.get(p1.STANDALONE_HEADER)
        found = version is not None or standalone_header is not None or self._is_json(response)
        return V1Ping(response.status_code, version, p1.parse_standalone(standalone_header), found)

    @staticmethod
    def _is_json(response: httpx.Response) -> bool:
        if response.status_code != 200 or len(response.content) > _JSON_LIMIT:
            return False
        try:
            _loads(response.content)
        except ValueError:
            return False
        return True

    async def repository_images(self, repository: str) -> list[dict[str, Any]]:
        """``GET /v1/repositories/<repo>/images`` with ``X-Docker-Token: true``; keeps the token and endpoints."""
        url = self.index_url + p1.path("images", repo=repository)
        response = await self._request("GET", url, what=f"v1 repository {repository}", want_token=True)
        self._remember_session(response)
        try:
            data = _loads(response.content)
        except ValueError:
            raise ProtocolError(f"v1 repository {repository}: images list is not JSON", status=200) from None
        if not isinstance(data, list):
            raise ProtocolError(f"v1 repository {repository}: images list is not a JSON list", status=200)
        return [item for item in data if isinstance(item, dict)]

    async def tag(self, repository: str, tag: str) -> str:
        """``GET /v1/repositories/<repo>/tags/<tag>`` -> the image id (a JSON string)."""
        name = p1.normalize_v1_repository(repository)
        data = await self._first_endpoint(p1.path("tag", repo=name, tag=tag), what=f"v1 tag {name}:{tag}")
        if not isinstance(data, str) or not p1.IMAGE_ID_RE.match(data):
            raise ProtocolError(f"v1 tag {name}:{tag}: not an image id: {str(data)[:80]!r}", status=200)
        return data

    async def tags(self, repository: str) -> dict[str, str]:
        """``GET /v1/repositories/<repo>/tags`` -> ``{tag: image id}``."""
        name = p1.normalize_v1_repository(repository)
        data = await self._first_endpoint(p1.path("tags", repo=name), what=f"v1 tags of {name}")
        if not isinstance(data, dict):
            raise ProtocolError(f"v1 tags of {name}: not a JSON object", status=200)
        return {str(k): str(v) for k, v in data.items()}

    async def search(self, query: str = "") -> list[str]:
        """``GET /v1/search?q=<query>`` -> the names of the repositories found (all of them for ``""``)."""
        url = f"{self.index_url}{p1.path('search')}?{urlencode({'q': query})}"
        data = await self._json("GET", url, what=f"v1 search of {self.index_url}")
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise ProtocolError(f"v1 search of {self.index_url}: no list of results", status=200)
        return [str(item["name"]) for item in results if isinstance(item, dict) and isinstance(item.get("name"), str)]

    async def delete_tag(self, repository: str, tag: str) -> None:
        """``DELETE /v1/repositories/<repo>/tags/<tag>``; 404 when the tag is not there."""
        name = p1.normalize_v1_repository(repository)
        url = self.endpoint + p1.path("tag", repo=name, tag=tag)
        await self._request("DELETE", url, what=f"delete of v1 tag {name}:{tag}")

    async def _first_endpoint(self, path: str, *, what: str) -> Any:
        # The engine tries each endpoint in turn: 404 ends the search, any other failure tries the next one.
        last: Exception | None = None
        for endpoint in self.endpoints:
            try:
                return await self._json("GET", endpoint + path, what=what)
            except NotFoundError:
                raise
            except (RegistryError, TransportError, AuthError) as exc:
                last = exc
        assert last is not None
        raise last

    async def ancestry(self, image_id: str) -> list[str] | None:
        """``GET /v1/images/<id>/ancestry`` -> ``[id, parent, ..., root]``; None when the server has no ancestry."""
        url = self.endpoint + p1.path("image.ancestry", image_id=image_id)
        try:
            data = await self._json("GET", url, what=f"v1 ancestry of {image_id}")
        except NotFoundError:
            return None
        if not isinstance(data, list) or not data or not all(isinstance(i, str) for i in data):
            raise ProtocolError(f"v1 ancestry of {image_id}: not a list of ids", status=200)
        if data[0] != image_id or not all(p1.IMAGE_ID_RE.match(i) for i in data):
            raise ProtocolError(f"v1 ancestry of {image_id}: malformed (must start with the image id)", status=200)
        return [str(i) for i in data]

    async def image_json(self, image_id: str) -> V1ImageMeta:
        """``GET /v1/images/<id>/json``: the exact bytes, ``X-Docker-Size`` and the payload checksum headers."""
        url = self.endpoint + p1.path("image.json", image_id=image_id)
        response = await self._request("GET", url, what=f"v1 image {image_id} json")
        size_text = response.headers.get(p1.SIZE_HEADER)
        size = int(size_text) if size_text and size_text.isdigit() else None
        values = response.headers.get_list(p1.PAYLOAD_CHECKSUM_HEADER)
        values += response.headers.get_list(p1.CHECKSUM_PAYLOAD_HEADER)
        return V1ImageMeta(response.content, size, parse_payload_checksums(values))

    @asynccontextmanager
    async def open_layer(self, image_id: str, *, start: int = 0) -> AsyncIterator[httpx.Response]:
        """``GET /v1/images/<id>/layer`` as a streamed response (read it with ``aiter_raw``).

        ``start`` > 0 asks for the rest of the layer with ``Range: bytes=<start>-`` (expects 206).
        """
        url = self.endpoint + p1.path("image.layer", image_id=image_id)
        extra = {"Range": range_request(start)} if start else None
        async with self._api.stream(
            "GET",
            url,
            what=f"v1 image {image_id} layer",
            headers=self._headers(url, extra),
            expect=(206,) if start else (200,),
        ) as response:
            yield response

    async def image_exists(self, image_id: str) -> bool:
        """True when ``GET /v1/images/<id>/json`` answers 200 (the engine's "already pushed" check)."""
        url = self.endpoint + p1.path("image.json", image_id=image_id)
        try:
            await self._request("GET", url, what=f"v1 image {image_id} json")
        except NotFoundError:
            return False
        except RegistryError as exc:
            # 400 "Image is being uploaded": present but unfinished, so it must be pushed again.
            if exc.status == 400:
                return False
            raise
        return True

    # -- write side (push, §2.3) ------------------------------------------------------------------------------

    async def put_repository(self, repository: str, index: list[dict[str, Any]]) -> None:
        """``PUT /v1/repositories/<repo>/`` with the image index; expects 200/201 and requires endpoints."""
        url = self.index_url + p1.path("repository", repo=repository)
        response = await self._request(
            "PUT",
            url,
            what=f"v1 repository {repository}",
            ok=(200, 201),
            content=json.dumps(index).encode(),
            headers={"Content-Type": "application/json"},
            want_token=True,
        )
        if not response.headers.get_list(p1.ENDPOINTS_HEADER):
            raise ProtocolError(f"v1 repository {repository}: index response didn't contain any endpoints")
        self._remember_session(response)

    async def put_image_json(self, image_id: str, raw: bytes) -> bool:
        """``PUT /v1/images/<id>/json``; False when the registry says the image already exists (409)."""
        url = self.endpoint + p1.path("image.json", image_id=image_id)
        response = await self._request(
            "PUT",
            url,
            what=f"v1 image {image_id} json",
            ok=(200, 409),
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        return response.status_code == 200

    async def put_layer(self, image_id: str, body: AsyncIterable[bytes]) -> None:
        """``PUT /v1/images/<id>/layer``, streamed with chunked transfer encoding as the engine sent it."""
        url = self.endpoint + p1.path("image.layer", image_id=image_id)
        what = f"v1 image {image_id} layer"
        headers = self._headers(url, {"Content-Type": "application/octet-stream"})
        request = self._http.build_request("PUT", url, headers=headers, content=body)
        with mapped_errors("PUT", url):
            response = await self._http.send(request, stream=True, auth=None)
        try:
            if response.status_code != 200:
                body_bytes = await response.aread()
                raise error_for_response(response, what, body_bytes)
        finally:
            await response.aclose()

    async def put_checksum(self, image_id: str, payload: str, tarsum: str | None = None) -> None:
        """``PUT /v1/images/<id>/checksum`` with ``X-Docker-Checksum-Payload`` (what the registry verifies)."""
        url = self.endpoint + p1.path("image.checksum", image_id=image_id)
        headers = {p1.CHECKSUM_PAYLOAD_HEADER: payload}
        if tarsum:
            headers[p1.CHECKSUM_HEADER] = tarsum
        await self._request("PUT", url, what=f"v1 image {image_id} checksum", headers=headers)

    async def put_tag(self, repository: str, tag: str, image_id: str) -> None:
        """``PUT /v1/repositories/<repo>/tags/<tag>`` with the body ``"<id>"``; expects 200 or 201."""
        name = p1.normalize_v1_repository(repository)
        url = self.endpoint + p1.path("tag", repo=name, tag=tag)
        await self._request(
            "PUT",
            url,
            what=f"v1 tag {name}:{tag}",
            ok=(200, 201),
            content=json.dumps(image_id).encode(),
            headers={"Content-Type": "application/json"},
        )

    async def put_repository_images(self, repository: str, index: list[dict[str, Any]]) -> None:
        """The final ``PUT /v1/repositories/<repo>/images``; it must answer 204."""
        url = self.index_url + p1.path("images", repo=repository)
        headers = {"Content-Type": "application/json", p1.ENDPOINTS_HEADER: ",".join(self._endpoint_hosts())}
        await self._request(
            "PUT",
            url,
            what=f"v1 repository {repository} images",
            ok=(204,),
            content=json.dumps(index).encode(),
            headers=headers,
            want_token=True,
        )

    def _endpoint_hosts(self) -> list[str]:
        return [urlsplit(endpoint).netloc for endpoint in self.endpoints]


async def open_session(
    api: RegistryAPI, registry: str, *, username: str | None, password: str | None, standalone: bool = False
) -> V1Api:
    """A v1 session with ``registry``: its scheme found (or remembered) by the client's RegistryAPI.

    ``standalone`` (the ping's ``X-Docker-Registry-Standalone``) sends Basic credentials on every request.
    """
    base = await api.base_url(registry)
    return V1Api(api, base, username=username, password=password, always_basic=standalone)
