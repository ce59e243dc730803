"""The registries a pull-through cache mirrors: one ``Upstream`` per ``ProxyRemote``, chosen per request.

Each upstream is reached through the client library (``regtool.Client``: its connection pool, retry policy and
auth flow, so Basic and bearer tokens work as they do for ``regtool pull``). Credentials are the remote's own, or
docker's config.json for the upstream host when the remote names none.

containerd's mirror requests carry ``?ns=<registry>``: ``Upstreams.select`` maps that namespace to its remote,
and anything else (no ``ns``, or one no remote names) to the remote without a namespace. A namespaced remote's
content is stored under ``_ns/<host>/<name>``: the name grammar forbids a component starting with ``_``, so no
client can reach it by name, and two upstreams' ``library/app`` never share tags.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import httpx

from regtool import mediatypes as mt
from regtool.client.client import Client
from regtool.client.net.connections import Exchange, exchange_of
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.catalog import list_tags
from regtool.digest import Digest
from regtool.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    ProtocolError,
    RegistryError,
    RegtoolError,
    TransportError,
    UsageError,
)
from regtool.grammar import parse_decimal
from regtool.manifest import Manifest
from regtool.protocol import v2
from regtool.protocol.errcodes import ErrorCode
from regtool.reference import Reference
from regtool.server.config import ProxyRemote
from regtool.server.errors import ApiError
from regtool.server.proxy.remotes import check_remote_url

__all__ = ["Upstream", "UpstreamBlob", "Upstreams", "is_unreachable", "upstream_error"]

NAMESPACE_ROOT = "_ns"


def is_unreachable(exc: RegtoolError) -> bool:
    """True when the upstream did not answer usefully (down, timing out, failing with 5xx or 429)."""
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, RegistryError) and (exc.status is None or exc.status >= 500 or exc.status == 429)


def upstream_error(exc: RegtoolError, what: str, unknown: ErrorCode) -> ApiError:
    """The error a client of the cache gets for an upstream failure on ``what``."""
    if isinstance(exc, NotFoundError):
        return ApiError(unknown, f"{what} unknown upstream")
    if isinstance(exc, TransportError) or is_unreachable(exc):
        return ApiError(ErrorCode.UNAVAILABLE, f"{what}: upstream unavailable ({exc})")
    if isinstance(exc, AuthError):
        # Not 401: the client's own credentials are not what failed, and a 401 would send it after a token.
        return ApiError(ErrorCode.UNKNOWN, f"{what}: the upstream refused the cache's credentials", status=502)
    if isinstance(exc, (IntegrityError, ProtocolError)):
        return ApiError(ErrorCode.UNKNOWN, f"{what}: upstream answered badly ({exc})", status=502)
    return ApiError(ErrorCode.UNKNOWN, f"{what}: upstream error ({exc})", status=502)


@dataclass(frozen=True, slots=True)
class UpstreamBlob:
    """An upstream blob GET whose body is still on its pooled connection: ``size`` None when not announced."""

    size: int | None
    exchange: Exchange
    api: RegistryAPI


class Upstream:
    """One mirrored registry: ``registry`` (host[:port]) at ``base`` (scheme://host[:port])."""

    def __init__(self, remote: ProxyRemote) -> None:
        scheme, registry = check_remote_url(remote.url)
        self.remote = remote
        self.registry = registry
        self.base = f"{scheme}://{registry}"
        self.storage_prefix = None if remote.namespace is None else f"{NAMESPACE_ROOT}/{_component(remote.namespace)}"
        self._client = Client(
            plain_http=scheme == "http",
            username=remote.username,
            password=remote.password,
            use_docker_config=remote.username is None,
            # One blob fetch per connection; the cache's own concurrency is what its clients ask for.
            jobs=64,
        )
        self._entered = False
        self._lock = anyio.Lock()

    def local_name(self, name: str) -> str:
        """Where ``name`` of this upstream is kept in the cache's storage."""
        return name if self.storage_prefix is None else f"{self.storage_prefix}/{name}"

    def reference(self, name: str, reference: str) -> Reference:
        if ":" in reference:
            return Reference(self.registry, name, digest=Digest.parse(reference))
        return Reference(self.registry, name, tag=reference)

    async def api(self) -> RegistryAPI:
        """The client's API, entered on first use (on the server's event loop) and kept for the app's life."""
        if not self._entered:
            async with self._lock:
                if not self._entered:
                    await self._client.__aenter__()
                    self._client.api.remember_base(self.registry, self.base)
                    self._entered = True
        return self._client.api

    async def close(self) -> None:
        if self._entered:
            self._entered = False
            await self._client.__aexit__(None, None, None)

    async def head_manifest(self, name: str, reference: str) -> Digest | None:
        """The digest the upstream names for ``reference`` (None when it sends no digest header).

        Sent once, not retried: a tag revalidation that cannot reach the upstream is answered from the cache
        at once rather than after the retry policy's back-off.
        """
        api = await self.api()
        url = self.base + v2.manifest_path(name, reference)
        response = await api.send(
            "HEAD", url, what=f"manifest {self.registry}/{name}:{reference}", headers=_ACCEPT, retry=False
        )
        header = response.headers.get(v2.CONTENT_DIGEST_HEADER)
        return Digest.parse(header) if header and Digest.is_valid(header) else None

    async def get_manifest(self, name: str, reference: str) -> Manifest:
        """The manifest, checked by the client library (its digest when asked by digest, its header)."""
        api = await self.api()
        return await api.get_manifest(self.reference(name, reference))

    async def tags(self, name: str) -> list[str]:
        api = await self.api()
        return await list_tags(api, Reference(self.registry, name))

    async def blob_size(self, name: str, digest: Digest) -> int | None:
        api = await self.api()
        return await api.blob_size(self.registry, name, digest)

    @contextlib.asynccontextmanager
    async def open_blob(self, name: str, digest: Digest) -> AsyncIterator[UpstreamBlob]:
        """GET the blob; its body stays on the connection for ``BlobFetcher.receive`` in a worker thread."""
        api = await self.api()
        url = self.base + v2.blob_path(name, str(digest))
        response = await api.send("GET", url, what=f"blob {digest}", stream=True, keep_body=True)
        try:
            exchange = exchange_of(response)
            if exchange is None:
                raise ProtocolError(f"blob {digest}: the response did not come over regtool's connections")
            yield UpstreamBlob(_length(response), exchange, api)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


_ACCEPT = {"Accept": mt.MANIFEST_ACCEPT}


def _length(response: httpx.Response) -> int | None:
    return parse_decimal(response.headers.get("Content-Length"))


def _component(host: str) -> str:
    # A storage path component: host names keep their letters, digits, dots and dashes; a port's colon becomes _.
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in host.lower()) or "_"


class Upstreams:
    """The remotes of one cache, by namespace (None: the default upstream)."""

    def __init__(self, remotes: Sequence[ProxyRemote]) -> None:
        self._by_namespace: dict[str | None, Upstream] = {}
        for remote in remotes:
            key = None if remote.namespace is None else remote.namespace.lower()
            if key in self._by_namespace:
                raise UsageError(f"two proxy remotes for namespace {remote.namespace or '(default)'}")
            self._by_namespace[key] = Upstream(remote)

    def select(self, namespace: str | None) -> Upstream:
        """The upstream for a request's ``?ns=`` value; NAME_UNKNOWN when no remote serves it."""
        key = None if namespace is None else namespace.lower()
        upstream = self._by_namespace.get(key) or self._by_namespace.get(None)
        if upstream is None:
            raise ApiError(
                ErrorCode.NAME_UNKNOWN, f"this cache mirrors no registry for namespace {str(namespace)[:100]!r}"
            )
        return upstream

    def all(self) -> list[Upstream]:
        return list(self._by_namespace.values())
