"""``Client``: the registry client over ``RegistryAPI``, ``V2Puller``, ``V2Pusher`` and the v1 modules.

Imported by ``regtool.client`` on first use of ``Client`` (see the package docstring for how to use it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from regtool.client.net.auth import Credentials, RegistryAuth
from regtool.client.net.blobfetch import BlobFetcher
from regtool.client.net.connections import ConnectionPool
from regtool.client.net.credentials import DockerConfig, lookup_credentials
from regtool.client.net.retry import RetryPolicy
from regtool.client.net.tls import TLSContexts, TLSSettings
from regtool.client.net.transport import build_http_client
from regtool.client.progress import NullProgress, Progress, add_http_events
from regtool.client.tasks import both
from regtool.client.threads import in_thread
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.splitpolicy import SplitPolicy
from regtool.errors import RegistryError, TransportError, UnsupportedProtocolError, UsageError

if TYPE_CHECKING:
    import httpx

    from regtool.client.endpoints import EndpointChain
    from regtool.client.mirrors import Endpoint, RegistriesConf
    from regtool.client.results import InspectResult, ProbeResult, PullResult, PushResult
    from regtool.client.v1.api import V1Api
    from regtool.client.v2.copy import CopyResult
    from regtool.digest import Digest
    from regtool.manifest import Manifest, Platform
    from regtool.reference import Reference

__all__ = ["Client"]

T = TypeVar("T")

_PROTOCOLS = ("auto", "v1", "v2")
DEFAULT_SPLIT = SplitPolicy()


class Client:
    """A registry client; use ``async with Client(...) as client``, on asyncio (``asyncio.run``, or anyio's
    asyncio backend: the pull-through cache runs it inside the server; not trio). Its blocking work goes to
    worker threads through ``threads.in_thread``.

    ``plain_http`` talks http only; ``insecure`` skips TLS verification (and allows http after https failed to
    connect); loopback hosts get http after https automatically. TLS trusts the system store plus ``ca_cert``
    and, per registry, docker's ``certs.d/<host>/`` (``certs_d``, default ``$REGTOOL_CERTS_D`` or
    ``/etc/docker/certs.d``: CAs and client certificates). Credentials: ``username``/``password`` for every
    registry, else ``REGTOOL_USERNAME``/``REGTOOL_PASSWORD``, else docker's config.json (``docker_config``, default
    ``$DOCKER_CONFIG/config.json``) and its credential helpers, looked up per registry when it asks for them;
    ``use_docker_config=False`` turns the last two off. ``jobs`` bounds concurrent blob transfers;
    ``retries`` is how often an idempotent request is retried on connection errors, timeouts and 408/429/5xx.
    ``connect_timeout`` (seconds) bounds each TCP connect and TLS handshake, ``timeout`` each wait for data (a
    response, the next bytes of a body, room to send), for API calls and blob bodies alike.
    ``per_registry`` caps the blob transfers (connections) to one registry host at once, across everything this
    client moves (default: ``jobs``); ``split`` fetches a blob with at least ``split.threshold`` bytes to go over
    ``split.parts`` Range connections (None: always one stream). ``rate_limit_floor`` keeps that many requests of
    a quota a registry states (``RateLimit-Remaining``, Docker Hub's ``ratelimit-remaining``) in hand, slowing down
    and then pausing as it nears them (``net/ratelimit.py``); None: quotas are not watched.
    ``registries`` (``mirrors.load_registries_conf``: registries.conf and ``--mirror``) says where images are
    read from: pulls, copy's source, inspect and tags try its mirrors in order, then the (possibly rewritten)
    primary location; pushes go where their reference says.
    """

    def __init__(
        self,
        *,
        plain_http: bool = False,
        insecure: bool = False,
        ca_cert: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        jobs: int = 8,
        progress: Progress | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        certs_d: Path | None = None,
        docker_config: Path | None = None,
        use_docker_config: bool = True,
        per_registry: int | None = None,
        split: SplitPolicy | None = DEFAULT_SPLIT,
        connect_timeout: float = 10.0,
        registries: RegistriesConf | None = None,
        rate_limit_floor: int | None = None,
    ) -> None:
        if jobs < 1:
            raise UsageError(f"jobs must be at least 1, got {jobs}")
        if (username is None) != (password is None):
            raise UsageError("give both a username and a password, or neither")
        if not (timeout > 0 and connect_timeout > 0):
            raise UsageError(f"timeouts must be more than 0 seconds, got {timeout} and {connect_timeout}")
        self.plain_http = plain_http
        self.insecure = insecure
        self.jobs = jobs
        self.progress: Progress = progress or NullProgress()
        credentials = Credentials(username, password) if username is not None and password is not None else None
        # Explicit credentials, else the environment and docker's config, per registry.
        lookup = None
        if credentials is None and use_docker_config:
            config = DockerConfig(docker_config)
            lookup = functools.partial(lookup_credentials, config=config)
        self.auth = RegistryAuth(credentials, lookup=lookup)
        self._tls = TLSContexts(TLSSettings(insecure=insecure, ca_cert=ca_cert, certs_d=certs_d))
        self._http: httpx.AsyncClient | None = None
        self._ca_cert = ca_cert
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        if rate_limit_floor is not None and rate_limit_floor < 0:
            raise UsageError(f"rate_limit_floor must be 0 or more, got {rate_limit_floor}")
        self._retry = RetryPolicy(total=max(0, retries), rate_limit_floor=rate_limit_floor)
        self._probes: dict[str, ProbeResult] = {}
        self._api: RegistryAPI | None = None
        self._fetcher: BlobFetcher | None = None
        self._pool: ConnectionPool | None = None
        # The per-registry connection cap and split (multi-connection) downloads.
        if per_registry is not None and per_registry < 1:
            raise UsageError(f"per_registry must be at least 1, got {per_registry}")
        self.per_registry = per_registry or jobs
        self.split = split
        self.registries = registries
        # Mirrors found unreachable in this client's lifetime: not asked again (endpoints.py).
        self._unreachable_mirrors: set[str] = set()

    async def __aenter__(self) -> Client:
        self._pool = ConnectionPool(
            self._tls.default(), self._timeout, ssl_for=self._tls.for_host, connect_timeout=self._connect_timeout
        )
        self._http = build_http_client(pool=self._pool, auth=self.auth)
        self.auth.bind(self._http)
        # Every API request becomes an "http" progress event (JSON lines, timelines).
        add_http_events(self._http, lambda: self.progress)
        self._fetcher = BlobFetcher(self._pool)
        self._api = RegistryAPI(
            self._http,
            retry=self._retry,
            plain_http=self.plain_http,
            insecure=self.insecure,
            auth=self.auth,
            fetcher=self._fetcher,
            per_host=self.per_registry,
        )
        self._api.retry_log.progress = self.progress
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._pool is not None:
            self._pool.close()
        self._fetcher = None
        self._pool = None
        self._http = None
        self._api = None

    @property
    def api(self) -> RegistryAPI:
        """The v2 API layer (for the v1 and copy modules); only inside ``async with``."""
        if self._api is None:
            raise RuntimeError("use the Client inside 'async with Client(...) as client'")
        return self._api

    # -- probe ------------------------------------------------------------------------------------------

    async def probe(self, registry: str) -> ProbeResult:
        """Which APIs ``registry`` (``host[:port]``) speaks: verdict v1 / v2 / both / neither, with evidence."""
        from regtool.client.probe import probe_registry

        result = await probe_registry(self.api, registry)
        self._probes[registry] = result
        return result

    async def _protocol_for(self, registry: str, protocol: str) -> str:
        """The protocol to use: the caller's choice, or (auto) v2 when the registry has it, else v1."""
        if protocol not in _PROTOCOLS:
            raise UsageError(f"unknown protocol {protocol!r}: expected auto, v1 or v2")
        from regtool.client.probe import probe_registry

        result = self._probes.get(registry)
        if result is None and protocol != "v1" and self.api.v2_shown(registry):
            # A real request showed v2 already: the probe would only repeat it.
            return "v2"
        # A forced v1 needs the v1 ping, which an auto probe skips once it found v2.
        if result is None or (protocol == "v1" and result.v2.found and not result.v1.found):
            result = await probe_registry(self.api, registry, check_v1=protocol == "v1")
            self._probes[registry] = result
        seen = "; ".join(str(e) for e in result.evidence) or "nothing answered"
        if result.scheme is None:
            raise TransportError(f"cannot reach registry {registry}: {seen}")
        failed = result.v2.status is not None and result.v2.status >= 500
        if protocol != "v1" and not result.v2.found and failed:
            # A 5xx says nothing about v2: never let it pass for "no v2" and quietly fall back to v1.
            raise RegistryError(f"registry {registry} failed on GET /v2/ (HTTP {result.v2.status}): {seen}")
        if protocol != "auto":
            if not (result.v1.found if protocol == "v1" else result.v2.found):
                raise UnsupportedProtocolError(f"registry {registry} does not speak registry {protocol}: {seen}")
            return protocol
        if result.v2.found:
            return "v2"
        if result.v1.found:
            return "v1"
        raise UnsupportedProtocolError(f"no registry API found at {registry}: {seen}")

    async def _v2_by_first_request(self, registry: str, protocol: str, over_v2: Callable[[], Awaitable[T]]) -> T:
        """``over_v2()`` with its first request to ``registry`` standing in for the probe's ``GET /v2/`` (one round
        trip less, as containerd does), where nothing is known of ``registry`` yet and ``protocol`` allows v2; raises
        ``NoV2Answer`` (nothing done) when that answer shows no v2 API, for the caller to probe instead."""
        from regtool.client.v2.api import NoV2Answer

        if protocol not in _PROTOCOLS:
            raise UsageError(f"unknown protocol {protocol!r}: expected auto, v1 or v2")
        if protocol == "v1" or registry in self._probes:
            raise NoV2Answer(f"registry {registry}: the probe decides")
        with self.api.first_request_locates(registry):
            return await over_v2()

    def allow_insecure(self, registry: str) -> None:
        """Skip TLS verification for ``registry`` alone, and let it fall back to plain HTTP when https fails (a
        skopeo sync file's ``tls-verify: false``); call it before the registry's first connection."""
        self.api.allow_insecure(registry)
        self._tls.allow_insecure(registry)

    # -- where images are read from ----------------------------------------------------------------------

    def read_chain(self, ref: Reference) -> EndpointChain:
        """The endpoints to read ``ref`` from (registries.conf and ``--mirror``: mirrors.py), in order; hosts
        marked insecure there get plain HTTP and unverified TLS. The one place reads are resolved: a job that reads
        through ``api`` itself (sync) asks ``read_chain(ref).first(what, attempt)`` for each manifest and blob."""
        from regtool.client.endpoints import EndpointChain
        from regtool.client.mirrors import Endpoint

        if self.registries is None:
            return EndpointChain((Endpoint(ref),), self.progress)
        endpoints = self.registries.pull_endpoints(ref)
        for endpoint in endpoints:
            if endpoint.insecure:
                self.api.allow_insecure(endpoint.ref.registry)
                self._tls.allow_insecure(endpoint.ref.registry)
        return EndpointChain(endpoints, self.progress, unreachable=self._unreachable_mirrors)

    # -- pull / push ------------------------------------------------------------------------------------

    async def pull(
        self,
        ref: Reference,
        dest: Path,
        *,
        format: str | None = None,
        platform: Platform | None = None,
        all_platforms: bool = False,
        protocol: str = "auto",
        v1_jobs: int = 1,
    ) -> PullResult:
        """Pull ``ref`` into ``dest``: an OCI layout directory (``format="oci"``) or a docker-archive tarball
        (``format="docker-archive"``); without ``format``, a tarball when ``dest`` ends in ``.tar``, else a layout.
        An explicit ``format`` wins over the name: ``"oci"`` with ``app.tar`` is a directory named ``app.tar``.
        For an index, ``platform`` (default: this
        machine's) picks one image, or ``all_platforms`` keeps them all (OCI layout only). Over v1 the layers
        come one after another (the engine's serial walk) unless ``v1_jobs`` > 1."""
        dest = Path(dest)
        if format is None:
            format = "docker-archive" if dest.suffix == ".tar" else "oci"
        if format == "docker-archive" and dest.is_dir():
            raise UsageError(f"cannot write a docker-archive to {dest}: it is a directory")
        from regtool.client.v2.api import NoV2Answer

        chain = self.read_chain(ref)

        async def over_v2() -> PullResult:
            from regtool.client.v2.pull import V2Puller

            puller = V2Puller(self.api, jobs=self.jobs, progress=self.progress, split=self.split)
            result = await puller.pull(
                ref, dest, format=format, platform=platform, all_platforms=all_platforms, chain=chain
            )
            self.progress.event("summary", **result.to_json())
            return result

        # Mirrors are v2 registries; probing the primary first would make a pull fail while it is down.
        if chain.has_mirrors and protocol != "v1":
            return await over_v2()
        try:
            return await self._v2_by_first_request(chain.primary.ref.registry, protocol, over_v2)
        except NoV2Answer:
            chosen = await self._protocol_for(chain.primary.ref.registry, protocol)
        if chosen == "v1":
            return await self._pull_v1(chain.primary.ref, dest, format=format, jobs=v1_jobs)
        return await over_v2()

    async def _pull_v1(self, ref: Reference, dest: Path, *, format: str, jobs: int = 1) -> PullResult:
        # The serial parent-chain walk lives in v1pull.py.
        from regtool.client.v1.pull import pull_v1

        session = await self._v1_session(ref.registry)
        outcome = await pull_v1(session, ref, dest, format=format, progress=self.progress, jobs=jobs)
        result = outcome.result(ref, dest, format)
        self.progress.event("summary", **result.to_json())
        return result

    async def _v1_session(self, registry: str) -> V1Api:
        from regtool.client.v1.api import open_session

        credentials = await in_thread(self.auth.credentials_for, registry)
        username = credentials.username if credentials is not None else None
        password = credentials.password if credentials is not None else None
        probe = self._probes.get(registry)
        standalone = bool(probe is not None and probe.v1.standalone)
        return await open_session(self.api, registry, username=username, password=password, standalone=standalone)

    async def push(
        self,
        source: str,
        ref: Reference,
        *,
        protocol: str = "auto",
        mount_from: Sequence[str] = (),
        chunk_size: int | None = None,
    ) -> PushResult:
        """Push ``source`` (an OCI layout ``dir[:tag]`` or a docker-archive ``file.tar``) to ``ref``.

        Blobs the registry has are skipped, blobs of ``mount_from`` repositories are mounted, the rest are
        uploaded concurrently (in ``PATCH`` chunks above ``chunk_size``, default
        ``push.DEFAULT_CHUNK_SIZE``, 256 MiB); manifests go last, children before their index.
        """
        chosen = await self._protocol_for(ref.registry, protocol)
        if chosen == "v1":
            return await self._push_v1(source, ref)
        from regtool.client.v2 import push as push_module

        if chunk_size is None:
            chunk_size = push_module.DEFAULT_CHUNK_SIZE
        pusher = push_module.V2Pusher(self.api, jobs=self.jobs, progress=self.progress, chunk_size=chunk_size)
        result = await pusher.push(source, ref, mount_from=mount_from)
        self.progress.event("summary", **result.to_json())
        return result

    async def _push_v1(self, source: str, ref: Reference) -> PushResult:
        # The engine's push order lives in v1push.py.
        from regtool.client.v1.push import push_v1

        session = await self._v1_session(ref.registry)
        result = await push_v1(session, source, ref, progress=self.progress)
        self.progress.event("summary", **result.to_json())
        return result

    async def copy(
        self,
        source: Reference,
        target: Reference,
        *,
        source_protocol: str = "auto",
        target_protocol: str = "auto",
        platform: Platform | None = None,
        mount_from: Sequence[str] = (),
        chunk_size: int | None = None,
        source_credentials: Credentials | None = None,
        target_credentials: Credentials | None = None,
    ) -> CopyResult:
        """Copy an image from one registry to another (v2 -> v2, v1 -> v2, v2 -> v1, v1 -> v1), streaming
        each blob through and verifying it, with no local copy of the image (copy.py).

        ``platform`` copies only that platform's image of an index. A v2 target mounts what it can (from the
        source repository on the same registry, and from ``mount_from``) and takes the rest in ``PATCH`` chunks
        above ``chunk_size`` (default ``push.DEFAULT_CHUNK_SIZE``). ``source_credentials`` and
        ``target_credentials`` are used for that end's registry instead of the client's.
        """
        from regtool.client.v2 import push as push_module
        from regtool.client.v2.copy import copy_image

        if source.registry == target.registry and None not in (source_credentials, target_credentials):
            if source_credentials != target_credentials:
                raise UsageError(
                    f"the source and the target are both on {source.registry}, which takes one set of "
                    "credentials: give the same user for both"
                )
        for end, credentials in ((source, source_credentials), (target, target_credentials)):
            if credentials is not None:
                self.auth.use_for(end.registry, credentials)
        chain = self.read_chain(source)

        async def source_end() -> tuple[Reference, str]:
            if chain.has_mirrors and source_protocol != "v1":
                # The copy reads from the first endpoint that serves the manifest (as containers/image does).
                served = await chain.first(f"manifest {source.reference}", self._serves_manifest)
                return served.ref, "v2"
            return chain.primary.ref, await self._protocol_for(chain.primary.ref.registry, source_protocol)

        async def target_end() -> str:
            return await self._protocol_for(target.registry, target_protocol)

        if chain.primary.ref.registry == target.registry:
            # One registry: its probe, made once, answers for both ends.
            (source, src), dst = await source_end(), await target_end()
        else:
            # Two registries are asked at once: on far ones, one round trip instead of two.
            (source, src), dst = await both(source_end(), target_end())
        v1_source = await self._v1_session(source.registry) if src == "v1" else None
        v1_target = await self._v1_session(target.registry) if dst == "v1" else None
        result = await copy_image(
            self.api,
            source,
            target,
            v1_source=v1_source,
            v1_target=v1_target,
            platform=platform,
            progress=self.progress,
            jobs=self.jobs,
            mount_from=mount_from,
            chunk_size=push_module.DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size,
        )
        self.progress.event("summary", **result.to_json())
        return result

    async def _serves_manifest(self, endpoint: Endpoint) -> Endpoint:
        await self.api.get_manifest(endpoint.ref)
        return endpoint

    # -- everyday commands ------------------------------------------------------------------------------
    # Each takes ``protocol`` (auto, v1, v2); what they do over v1 is in v1/listing.py.

    async def _v2_or_v1(
        self,
        registry: str,
        protocol: str,
        over_v2: Callable[[], Awaitable[T]],
        over_v1: Callable[[V1Api], Awaitable[T]],
    ) -> T:
        """``over_v2()``, or ``over_v1`` on a v1 session, as ``protocol`` says (``auto``: v2 when the probe finds
        it, else v1). ``over_v2``'s first request stands in for the probe's ``GET /v2/`` where it can."""
        from regtool.client.v2.api import NoV2Answer

        try:
            return await self._v2_by_first_request(registry, protocol, over_v2)
        except NoV2Answer:
            pass
        try:
            chosen = await self._protocol_for(registry, protocol)
        except TransportError:
            if protocol == "v1":
                raise
            # The probe sends each request once; the v2 call retries as the client's policy says, and its error
            # names what failed.
            chosen = "v2"
        if chosen == "v2":
            return await over_v2()
        return await over_v1(await self._v1_session(registry))

    async def tags(self, repository: Reference, *, protocol: str = "auto") -> list[str]:
        """All tags of ``repository``, following ``Link`` pagination."""
        from regtool.client.v1 import listing as v1listing
        from regtool.client.v2.catalog import list_tags

        def at(endpoint: Endpoint) -> Awaitable[list[str]]:
            where = endpoint.ref
            return self._v2_or_v1(
                where.registry, protocol, lambda: list_tags(self.api, where), lambda v1: v1listing.v1_tags(v1, where)
            )

        return await self.read_chain(repository).first(f"tags of {repository}", at)

    async def catalog(self, registry: str, *, protocol: str = "auto") -> list[str]:
        """All repository names of ``registry`` (``/v2/_catalog``, following ``Link`` pagination)."""
        from regtool.client.v1 import listing as v1listing
        from regtool.client.v2.catalog import list_repositories

        return await self._v2_or_v1(
            registry, protocol, lambda: list_repositories(self.api, registry), v1listing.v1_catalog
        )

    async def manifest(self, ref: Reference) -> Manifest:
        """``ref``'s manifest as the registry serves it (raw bytes kept, verified when ``ref`` has a digest)."""
        return await self.read_chain(ref).first(
            f"manifest {ref.reference}", lambda endpoint: self.api.get_manifest(endpoint.ref)
        )

    async def manifest_bytes(self, ref: Reference, *, protocol: str = "auto") -> bytes:
        """``ref``'s manifest bytes as served; over v1, which has no manifests, the JSON of the tag's image."""
        from regtool.client.v1 import listing as v1listing

        def at(endpoint: Endpoint) -> Awaitable[bytes]:
            where = endpoint.ref

            async def over_v2() -> bytes:
                return (await self.api.get_manifest(where)).raw

            return self._v2_or_v1(where.registry, protocol, over_v2, lambda v1: v1listing.v1_image_json(v1, where))

        return await self.read_chain(ref).first(f"manifest {ref.reference}", at)

    async def inspect(
        self, ref: Reference, *, platform: Platform | None = None, protocol: str = "auto"
    ) -> InspectResult:
        """Describe ``ref``: digest, media type, an index's platforms, the (selected) image's layers and config."""
        from regtool.client.v1 import listing as v1listing
        from regtool.client.v2.inspect import inspect_image

        def at(endpoint: Endpoint) -> Awaitable[InspectResult]:
            where = endpoint.ref
            return self._v2_or_v1(
                where.registry,
                protocol,
                lambda: inspect_image(self.api, where, platform=platform),
                lambda v1: v1listing.v1_inspect(v1, where),
            )

        result = await self.read_chain(ref).first(f"manifest {ref.reference}", at)
        # Named as asked, wherever it was read.
        return dataclasses.replace(result, reference=str(ref))

    async def delete(self, ref: Reference, *, protocol: str = "auto") -> Digest:
        """Delete ``ref``'s manifest (a tag is resolved to its digest first); returns the deleted digest."""
        from regtool.client.v1 import listing as v1listing
        from regtool.client.v2.inspect import delete_manifest

        return await self._v2_or_v1(
            ref.registry, protocol, lambda: delete_manifest(self.api, ref), lambda v1: v1listing.v1_delete(v1, ref)
        )
