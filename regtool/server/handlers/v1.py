"""The registry v1 API beside v2, as docker-registry 0.9 served it (protocols.md §1.1, §1.2).

``routes()`` is appended to the route table when ``ServerConfig.enable_v1`` is set; without it every ``/v1/``
path answers 404, so a probe sees no v1. The server behaves as a standalone registry (no index, no token
checks) that still hands out ``X-Docker-Token`` and ``X-Docker-Endpoints`` the way clients expect.

Responses follow docker-registry's ``toolkit.response``: JSON with sorted keys and no-cache headers; ``true``
when there is nothing else to say; errors as ``{"error": "<message>"}`` with docker-registry's messages.
Image layers are streamed both ways in 1 MiB chunks and stored in the blob store v2 uses. A tag PUT also stores
the image as a v2 manifest under the same name and tag, and a tag DELETE takes that v2 tag back
(``storage/v1mirror.py``), so what is pushed over v1 is there over v2 too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from regtool.digest import DigestVerifier
from regtool.protocol import v1 as p1
from regtool.protocol.errcodes import ErrorCode
from regtool.protocol.ranges import content_range
from regtool.server.auth.base import Access, permitted
from regtool.server.errors import ApiError, storage_error
from regtool.server.handlers.base import authorize, context, run_sync
from regtool.server.storage.driver import PathNotFound
from regtool.server.storage.v1images import V1Error, V1ImageStore, load_json, user_agent_metadata
from regtool.server.storage.v1mirror import expose_tag, withdraw_tags
from regtool.server.streaming import StreamResponse, parse_range, receive_into

__all__ = ["routes"]

logger = logging.getLogger("regtool.server")

_MAX_JSON = 4 * 1024 * 1024
_NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "-1"}
_CACHE_FOREVER = {
    "Cache-Control": "public, max-age=31536000",
    "Expires": "Thu, 01 Jan 2099 00:00:00 GMT",
    "Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT",
}
_STANDALONE = "true"

Handler = Callable[[Request], Awaitable[Response]]


def v1_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A docker-registry style JSON response: sorted keys, no-cache headers."""
    body = json.dumps(data, sort_keys=True).encode()
    return Response(body, status_code=status, headers={**_NO_CACHE, **(headers or {})}, media_type="application/json")


def v1_raw(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Stored JSON bytes, sent unchanged."""
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def v1_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return v1_json({"error": message}, status, headers)


def _endpoint(handler: Handler) -> Handler:
    """Render V1Error, ApiError from shared helpers (auth, ranges) and named storage faults in the v1 envelope."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except V1Error as exc:
            return v1_error(exc.status, exc.message, exc.headers)
        except ApiError as exc:
            return v1_error(exc.status, exc.message, exc.headers)
        except OSError as exc:
            error = storage_error(exc, request.method, request.url.path)
            if error is None:
                raise
            logger.warning("%s", error.message)
            return v1_error(error.status, error.message)

    return wrapped


def _store(request: Request) -> V1ImageStore:
    ctx = context(request)
    return V1ImageStore(ctx.driver, ctx.registry.blobs)


async def _authorize_image(request: Request, image_id: str) -> None:
    """Image ids are global, so under an ACL an image is read only by a caller who may pull a repository whose
    image list names it (as its tags are); without one, signing in (or anonymous pull) is all it takes."""
    await authorize(request)
    ctx = context(request)
    store = _store(request)
    # An image that is not there is a 404 for everyone, as before: a pusher asks before it uploads one.
    if ctx.config.auth_acl is None or not await run_sync(store.image_exists, image_id):
        return
    names = await run_sync(store.repositories_holding, image_id)
    if not await permitted(ctx.access, request, [Access.pull(name) for name in names]):
        raise ApiError(ErrorCode.DENIED, f"requested access to the resource is denied: image {image_id}")


def _writable(request: Request) -> None:
    if context(request).config.read_only:
        raise V1Error(405, "registry is read-only")
    if context(request).config.proxy_remotes:
        raise V1Error(405, "registry is a pull-through cache")


def _deletable(request: Request) -> None:
    """As ``_writable``, and deletes must be on (distribution's storage.delete.enabled, for v2 and v1 alike)."""
    _writable(request)
    if not context(request).config.delete_enabled:
        raise V1Error(405, "deletes are disabled on this registry")


def _repository(request: Request) -> str:
    name = str(request.path_params.get("repo", ""))
    if not name or len(name) > 255 or "\x00" in name:
        raise V1Error(400, "Invalid repository name")
    normalized = p1.normalize_v1_repository(name)
    # A repository nested in another is stored inside its directory, where these names are the outer
    # repository's own files (its privacy flag, image list and tag JSON): refused, or writing one would
    # overwrite or delete the other.
    if any(c in _REPOSITORY_FILE_NAMES or c.startswith("json_") for c in normalized.split("/")[2:]):
        raise V1Error(400, f"Invalid repository name: {name!r} would collide with another repository's files")
    return normalized


_REPOSITORY_FILE_NAMES = frozenset({"private", "index_images"})


def _image_id(request: Request) -> str:
    image_id = str(request.path_params.get("image_id", ""))
    if not p1.IMAGE_ID_RE.match(image_id):
        raise V1Error(404, "Invalid image ID")
    return image_id


def _tag(request: Request, *, missing: str = "Tag not found") -> str:
    tag = str(request.path_params.get("tag", ""))
    if not p1.V1_TAG_RE.match(tag):
        raise V1Error(404, missing)
    return tag


async def _body(request: Request, limit: int = _MAX_JSON) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise V1Error(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _token_headers(request: Request, name: str, access: str) -> dict[str, str]:
    # docker-registry's standalone index: a random token the client sends back (nobody checks it) and the
    # endpoints to use, which default to the Host the client used.
    # The name quoted: a header is Latin-1, and a '"' would end the value early.
    token = f'Token signature={secrets.token_hex(16)},repository="{quote(name, safe="/")}",access={access}'
    host = request.headers.get("host") or f"{context(request).config.host}:{context(request).config.port}"
    return {p1.TOKEN_HEADER: token, "WWW-Authenticate": token, p1.ENDPOINTS_HEADER: host}


# -- ping, users, search ----------------------------------------------------------------------------------------


@_endpoint
async def ping(request: Request) -> Response:
    """``GET /_ping`` and ``/v1/_ping``: 200 ``{}`` with the version and standalone headers."""
    headers = {p1.VERSION_HEADER: p1.REGISTRY_VERSION, p1.STANDALONE_HEADER: _STANDALONE}
    return v1_json({}, headers=headers)


@_endpoint
async def users(request: Request) -> Response:
    """``GET /v1/users`` 200 "OK" (docker login's probe); ``POST /v1/users/`` 201 "User Created"."""
    if request.method == "POST":
        return v1_json("User Created", 201)
    return v1_json("OK")


@_endpoint
async def update_user(request: Request) -> Response:
    """``PUT /v1/users/<user>/`` -> 204."""
    return Response(status_code=204, headers=_NO_CACHE)


@_endpoint
async def search(request: Request) -> Response:
    """``GET /v1/search?q=``: repositories whose name contains the query, of those the caller may pull."""
    query = request.query_params.get("q", "")
    names = await run_sync(_store(request).search, query)
    # As for the v2 catalog: under an ACL, names of repositories the caller cannot read are not shown.
    allowed = await permitted(context(request).access, request, [Access.pull(name) for name in names])
    names = [access.name for access in allowed]
    results = [{"name": name, "description": ""} for name in names]
    return v1_json({"query": query, "num_results": len(results), "results": results})


# -- images -----------------------------------------------------------------------------------------------------


@_endpoint
async def get_image_json(request: Request) -> Response:
    """``GET /v1/images/<id>/json``: the stored bytes, ``X-Docker-Size`` and the payload checksum."""
    image_id = _image_id(request)
    await _authorize_image(request, image_id)
    info = await run_sync(_store(request).get_json, image_id)
    if "if-modified-since" in request.headers:
        # docker-registry answers 304 to any If-Modified-Since: image JSON never changes once complete.
        return Response(status_code=304, headers=_CACHE_FOREVER)
    headers = dict(_CACHE_FOREVER)
    if info.size is not None:
        headers[p1.SIZE_HEADER] = str(info.size)
    if info.checksums:
        headers[p1.PAYLOAD_CHECKSUM_HEADER] = info.checksums[0]
        headers[p1.CHECKSUM_PAYLOAD_HEADER] = info.checksums[0]
    return v1_raw(info.json, headers=headers)


@_endpoint
async def put_image_json(request: Request) -> Response:
    """``PUT /v1/images/<id>/json``: 200; 400 for bad JSON/id/parent; 409 when the image is complete."""
    image_id = _image_id(request)
    await authorize(request)
    _writable(request)
    raw = await _body(request)
    await run_sync(_store(request).put_json, image_id, raw)
    return v1_json(True)


@_endpoint
async def get_ancestry(request: Request) -> Response:
    """``GET /v1/images/<id>/ancestry``: ``[id, parent, ..., root]``."""
    image_id = _image_id(request)
    await _authorize_image(request, image_id)
    raw = await run_sync(_store(request).ancestry, image_id)
    return v1_raw(raw, headers=_CACHE_FOREVER)


@_endpoint
async def get_layer(request: Request) -> Response:
    """``GET /v1/images/<id>/layer``: streamed; a Range (RFC 9110) gives 206, an unsatisfiable one 416."""
    image_id = _image_id(request)
    await _authorize_image(request, image_id)
    store = _store(request)
    digest, size = await run_sync(store.layer, image_id)
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **_CACHE_FOREVER}
    opener = partial(store.open_layer, digest)
    byte_range = parse_range(request.headers.get("range"), size)
    if byte_range is None:
        return StreamResponse(opener, 0, size, headers=headers)
    first, last = byte_range
    headers["Content-Range"] = content_range(first, last, size)
    return StreamResponse(opener, first, last - first + 1, status_code=206, headers=headers)


class _PayloadVerifier(DigestVerifier):
    """Hashes the layer (its blob digest) and, alongside, ``sha256(json + "\\n" + layer)`` (the payload)."""

    __slots__ = ("payload",)

    def __init__(self, json_bytes: bytes) -> None:
        super().__init__("sha256")
        self.payload = hashlib.sha256(json_bytes + b"\n")

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        super().update(chunk)
        self.payload.update(chunk)


@_endpoint
async def put_layer(request: Request) -> Response:
    """``PUT /v1/images/<id>/layer``: stream into storage while computing the payload checksum; 200."""
    image_id = _image_id(request)
    await authorize(request)
    _writable(request)
    store = _store(request)
    upload, writer, json_bytes = await run_sync(store.begin_layer, image_id)
    hasher = _PayloadVerifier(json_bytes)
    try:
        await receive_into(request, writer, hasher, idle_timeout=context(request).config.body_timeout)
        payload = "sha256:" + hasher.payload.hexdigest()
        await run_sync(store.finish_layer, image_id, upload, writer, hasher, payload, json_bytes)
    except PathNotFound:
        # Only the upload itself can be missing here: the garbage collector removed it, the body having stalled
        # for longer than its grace period.
        await run_sync(store.abort_layer, upload, writer)
        raise V1Error(400, "Layer upload removed after being idle too long: push the image again") from None
    except BaseException:
        await run_sync(store.abort_layer, upload, writer)
        raise
    return v1_json(True)


@_endpoint
async def put_checksum(request: Request) -> Response:
    """``PUT /v1/images/<id>/checksum``: verify ``X-Docker-Checksum-Payload``; the image becomes readable."""
    image_id = _image_id(request)
    await authorize(request)
    _writable(request)
    payload = request.headers.get(p1.CHECKSUM_PAYLOAD_HEADER)
    await run_sync(_store(request).put_checksum, image_id, payload)
    return v1_json(True)


# -- repositories and tags ------------------------------------------------------------------------------------


def _index_entries(raw: bytes) -> list[dict[str, Any]]:
    data = load_json(raw, "Error Decoding JSON") if raw.strip() else []
    if not isinstance(data, list):
        raise V1Error(400, "Invalid data")
    return [item for item in data if isinstance(item, dict)]


@_endpoint
async def put_repository(request: Request) -> Response:
    """``PUT /v1/repositories/<repo>/`` (the index of a push): 200 with token and endpoints."""
    name = _repository(request)
    await authorize(request, Access.push(name))
    _writable(request)
    entries = _index_entries(await _body(request))
    await run_sync(_store(request).put_index, name, entries)
    return v1_json("", headers=_token_headers(request, name, "write"))


@_endpoint
async def put_repository_images(request: Request) -> Response:
    """``PUT /v1/repositories/<repo>/images`` (the end of a push): 204 with token and endpoints."""
    name = _repository(request)
    await authorize(request, Access.push(name))
    _writable(request)
    entries = _index_entries(await _body(request))
    await run_sync(_store(request).put_index, name, entries)
    return Response(status_code=204, headers={**_NO_CACHE, **_token_headers(request, name, "write")})


@_endpoint
async def get_repository_images(request: Request) -> Response:
    """``GET /v1/repositories/<repo>/images``: the stored index list, with a read token and endpoints."""
    name = _repository(request)
    await authorize(request, Access.pull(name))
    raw = await run_sync(_store(request).get_index, name)
    return v1_raw(raw, headers={**_NO_CACHE, **_token_headers(request, name, "read")})


@_endpoint
async def delete_repository_images(request: Request) -> Response:
    """``DELETE /v1/repositories/<repo>/images``: 204 (docker-registry does nothing either)."""
    _repository(request)
    _writable(request)
    return Response(status_code=204, headers=_NO_CACHE)


@_endpoint
async def put_repository_auth(request: Request) -> Response:
    """``PUT /v1/repositories/<repo>/auth``: 200 "OK"."""
    _repository(request)
    return v1_json("OK")


@_endpoint
async def list_tags(request: Request) -> Response:
    """``GET /v1/repositories/<repo>/tags``: ``{tag: image id}``; 404 "Repository not found"."""
    name = _repository(request)
    await authorize(request, Access.pull(name))
    return v1_json(await run_sync(_store(request).tags, name))


@_endpoint
async def get_tag(request: Request) -> Response:
    """``GET /v1/repositories/<repo>/tags/<tag>``: the image id as a JSON string; 404 "Tag not found"."""
    name = _repository(request)
    tag = _tag(request)
    await authorize(request, Access.pull(name))
    return v1_json(await run_sync(_store(request).tag, name, tag))


@_endpoint
async def put_tag(request: Request) -> Response:
    """``PUT /v1/repositories/<repo>/tags/<tag>`` with ``"<id>"``: 200; 400 bad tag or body; 404 no image."""
    name = _repository(request)
    tag = str(request.path_params.get("tag", ""))
    if not p1.V1_TAG_RE.match(tag):
        raise V1Error(400, "Invalid tag name (must match ^[\\w][\\w.-]{0,127}$)")
    await authorize(request, Access.push(name))
    _writable(request)
    image_id = load_json(await _body(request), "Invalid data")
    if not isinstance(image_id, str):
        raise V1Error(400, "Invalid data")
    metadata = user_agent_metadata(request.headers.get("user-agent", ""))
    store = _store(request)
    await run_sync(store.put_tag, name, tag, image_id, metadata)
    # The same image under the same name and tag over v2 (storage/v1mirror.py).
    await run_sync(expose_tag, context(request).registry, store, name, tag, image_id)
    return v1_json(True)


@_endpoint
async def delete_tag(request: Request) -> Response:
    """``DELETE /v1/repositories/<repo>/tags/<tag>``: 200; 404 "Tag not found: <tag>"."""
    name = _repository(request)
    tag = str(request.path_params.get("tag", ""))
    if not p1.V1_TAG_RE.match(tag):
        raise V1Error(404, f"Tag not found: {tag[:128]}")
    await authorize(request, Access.delete(name))
    _deletable(request)
    store = _store(request)
    try:
        image_id = await run_sync(store.tag, name, tag)
    except V1Error:
        image_id = ""  # delete_tag answers with docker-registry's message
    await run_sync(store.delete_tag, name, tag)
    await run_sync(withdraw_tags, context(request).registry, store, name, {tag: image_id})
    return v1_json(True)


@_endpoint
async def delete_repository(request: Request) -> Response:
    """``DELETE /v1/repositories/<repo>/`` and ``/tags``: 200, removing every tag; 404 when unknown."""
    name = _repository(request)
    await authorize(request, Access.delete(name))
    _deletable(request)
    store = _store(request)
    tags = await run_sync(store.tags, name)
    await run_sync(store.delete_repository, name)
    await run_sync(withdraw_tags, context(request).registry, store, name, tags)
    return v1_json(True)


@_endpoint
async def repository_json(request: Request) -> Response:
    """``GET /v1/repositories/<repo>/json``: the last tag PUT's client metadata (defaults if none)."""
    name = _repository(request)
    await authorize(request, Access.pull(name))
    return v1_json(await run_sync(_store(request).metadata, name, None))


@_endpoint
async def tag_json(request: Request) -> Response:
    """``GET /v1/repositories/<repo>/tags/<tag>/json``: that tag's client metadata."""
    name = _repository(request)
    tag = _tag(request)
    await authorize(request, Access.pull(name))
    return v1_json(await run_sync(_store(request).metadata, name, tag))


_ACCESS_RE = re.compile(r"^(?:private|public)$")


@_endpoint
async def properties(request: Request) -> Response:
    """``GET/PUT /v1/repositories/<repo>/properties``: ``{"access": "private"|"public"}``."""
    name = _repository(request)
    store = _store(request)
    if request.method in ("GET", "HEAD"):
        await authorize(request, Access.pull(name))
        return v1_json(await run_sync(store.properties, name))
    await authorize(request, Access.push(name))
    _writable(request)
    data = load_json(await _body(request), "Error Decoding JSON")
    access = data.get("access") if isinstance(data, dict) else None
    if not isinstance(access, str) or not _ACCESS_RE.match(access):
        raise V1Error(400, "Invalid data")
    await run_sync(store.put_properties, name, access)
    return v1_json(True)


def routes() -> list[BaseRoute]:
    """Every v1 route, from ``protocol.v1.ROUTES``; the most specific repository suffixes come first (names
    contain ``/``, so ``{repo}`` matches a path)."""
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str], str]] = [
        ("ping.root", ping, ["GET"], "v1.ping.root"),
        ("ping", ping, ["GET"], "v1.ping"),
        ("users.noslash", users, ["GET"], "v1.users.noslash"),
        ("users", users, ["GET", "POST"], "v1.users"),
        ("user", update_user, ["PUT"], "v1.user"),
        ("search", search, ["GET"], "v1.search"),
        ("image.json", get_image_json, ["GET"], "v1.image.json.get"),
        ("image.json", put_image_json, ["PUT"], "v1.image.json.put"),
        ("image.layer", get_layer, ["GET"], "v1.image.layer.get"),
        ("image.layer", put_layer, ["PUT"], "v1.image.layer.put"),
        ("image.checksum", put_checksum, ["PUT"], "v1.image.checksum"),
        ("image.ancestry", get_ancestry, ["GET"], "v1.image.ancestry"),
        ("tag.json", tag_json, ["GET"], "v1.tag.json"),
        ("tag", get_tag, ["GET"], "v1.tag.get"),
        ("tag", put_tag, ["PUT"], "v1.tag.put"),
        ("tag", delete_tag, ["DELETE"], "v1.tag.delete"),
        ("tags", list_tags, ["GET"], "v1.tags"),
        ("tags", delete_repository, ["DELETE"], "v1.tags.delete"),
        ("images", get_repository_images, ["GET"], "v1.images.get"),
        ("images", put_repository_images, ["PUT"], "v1.images.put"),
        ("images", delete_repository_images, ["DELETE"], "v1.images.delete"),
        ("repository.json", repository_json, ["GET"], "v1.repository.json"),
        ("repository.auth", put_repository_auth, ["PUT"], "v1.repository.auth"),
        ("repository.properties", properties, ["GET", "PUT"], "v1.repository.properties"),
        ("repository", put_repository, ["PUT"], "v1.repository.put"),
        ("repository", delete_repository, ["DELETE"], "v1.repository.delete"),
    ]
    return [
        Route(p1.ROUTES[route].replace("{repo}", "{repo:path}"), endpoint, methods=methods, name=name)
        for route, endpoint, methods, name in table
    ]
