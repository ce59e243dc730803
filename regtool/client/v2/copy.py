"""Registry to registry copy, across protocols: v2 -> v2, v1 -> v2 (migrate), v2 -> v1, v1 -> v1.

No local copy of the image is made. Blobs stream from the source to the target and are verified on the way:

- **v2 -> v2**: each missing blob (HEAD first) is relayed GET -> PUT by one worker thread, its digest checked
  on the way (``_RelayBody``); an index is copied with all its child manifests, or with a ``platform`` only
  that platform's image manifest (chosen as a pull chooses it, ``resolve.plan_images``, so an absent platform
  fails the same way, listing the available ones), tagged at the target; manifests keep their exact bytes, so
  digests are unchanged. On one registry, a blob is mounted from the source repository instead (``POST
  ?mount=&from=``), as it is from any ``mount_from`` repository.
- **v2 -> v1**: the v1 chain is derived from the config (deterministic ids, ``convert.v1_chain_from_config``)
  and each layer blob streams from the v2 GET into the v1 layer PUT; a digest mismatch aborts the PUT before
  it completes, so the registry never sees the image finished.
- **v1 -> v2**: the v1 chain is walked serially (as in a v1 pull); each layer is spooled to one temporary
  file (a v2 upload needs its digest, and the config needs the uncompressed diff_id), checked against the
  payload checksum, uploaded, and deleted. bzip2/xz layers are uploaded decompressed. The config is
  synthesized from the v1 JSON (protocols.md §6.2) and an OCI manifest pushed last.
- **v1 -> v1**: the real v1 ids and JSON are kept; layers stream through, checked against the payload checksum.

Uploads to a v2 target go through the push's upload (``upload.BlobUploader``): the mounts, and every session
remembered on disk (``resume.UploadStateStore``) with the offset the registry acknowledged. Blobs up to
``chunk_size`` go in one ``PUT``, larger ones in ``PATCH`` chunks of that size. A rerun after an interruption
skips the blobs the target has, asks the registry how far an unfinished session got, fetches only the rest from
the source (``Range``) and sends only that. The first part of such a resumed blob is not read again, so regtool
cannot hash the whole: the target's digest check of the whole blob on the closing ``PUT ?digest=`` (which the
distribution spec requires of a registry) verifies it, and a refusal there is an IntegrityError that also
drops the session. A request that fails within a run is retried alike, the source opened again where the
session stands. A v1 target resumes nothing within a layer; a rerun skips the images it already has.

A target named by digest must name the manifest that is copied (checked before anything is written; for a
v1 source, whose manifest is built from the copied layers, before the manifest is put).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, MutableSet, Sequence
from pathlib import Path
from typing import BinaryIO

import httpx

from regtool import mediatypes as mt
from regtool.client.net.blobfetch import BodyBroken, ResponseReader, SourceTruncated
from regtool.client.net.connections import BodySender, exchange_of
from regtool.client.net.transport import mapped_errors, redact_url
from regtool.client.progress import NullProgress, Progress, report_image
from regtool.client.results import CopyResult
from regtool.client.tasks import PRECONNECT_PER_JOB, run_bounded
from regtool.client.threads import in_thread, shielded
from regtool.client.v1.api import V1Api, V1ImageMeta
from regtool.client.v1.pull import download_layer, fetch_chain, registry_image
from regtool.client.v1.push import LayerOpener, V1Layer, push_v1_chain
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.resolve import plan_images, resolve_image
from regtool.client.v2.upload import (
    DEFAULT_CHUNK_SIZE,
    BlobFiles,
    BlobPlace,
    BlobUploader,
    Part,
    SourceCheck,
    UploadBody,
    UploadTally,
    send_threaded,
)
from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError, IntegrityError, ProtocolError, TransportError, UsageError
from regtool.image.blobstore import BlobStore
from regtool.image.convert import (
    V1Image,
    config_from_v1,
    oci_manifest,
    payload_checksum,
    v1_chain_from_config,
)
from regtool.manifest import Descriptor, Manifest, Platform, parse_manifest
from regtool.protocol import v2
from regtool.protocol.ranges import parse_content_range, range_request
from regtool.reference import Reference

__all__ = ["CopyResult", "copy_image"]

_CHUNK = 1 << 20
_CONFIG_LIMIT = 16 << 20


# -- v2 blobs: stream out, stream in ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _v2_blob_chunks(
    api: RegistryAPI, ref: Reference, digest: Digest, size: int, offset: int = 0
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream a v2 blob from ``offset``, holding the last chunk back until what can be checked was checked.

    The whole blob (from 0, or a registry that ignored the ``Range``, whose first ``offset`` bytes are read and
    dropped) has its digest and size verified; only the length of a ``206`` rest can be, and the target verifies
    the whole on the closing PUT (see the module docstring).
    """
    url = await api.url(ref.registry, v2.blob_path(ref.repository, str(digest)))
    what = f"blob {digest} of {ref.repository_ref}"
    headers = {"Range": range_request(offset)} if offset else None
    async with api.stream("GET", url, what=what, headers=headers, expect=(200, 206) if offset else (200,)) as response:
        whole = response.status_code == 200
        if not whole:
            _check_content_range(response, offset, size, what, url)

        async def chunks() -> AsyncIterator[bytes]:
            verifier = DigestVerifier(digest.algorithm) if whole else None
            drop = offset if whole else 0
            received = 0
            pending: bytes | None = None
            with mapped_errors("GET", url):
                async for chunk in response.aiter_raw(_CHUNK):
                    received += len(chunk)
                    if verifier is not None:
                        await in_thread(verifier.update, chunk)
                    if drop:
                        cut = min(drop, len(chunk))
                        chunk, drop = chunk[cut:], drop - cut
                        if not chunk:
                            continue
                    if pending is not None:
                        yield pending
                    pending = chunk
            # Hold the last chunk back until the blob checked out, so a bad blob never completes an upload.
            if verifier is not None:
                verifier.verify(digest, size, what=f"blob from {redact_url(url)}")
            elif received != size - offset:
                raise IntegrityError(
                    f"blob {digest}: {received} bytes from offset {offset}, expected {size - offset} "
                    f"(from {redact_url(url)})"
                )
            if pending is not None:
                yield pending

        yield chunks()


def _check_content_range(response: httpx.Response, offset: int, size: int, what: str, url: str) -> None:
    """ProtocolError unless a 206 serves exactly the rest of the blob from ``offset``."""
    served = parse_content_range(response.headers.get("Content-Range"))
    if served is None or served[:2] != (offset, size - 1) or served[2] not in (None, size):
        raise ProtocolError(
            f"{what}: asked for bytes {offset}-{size - 1}/{size}, got Content-Range "
            f"{response.headers.get('Content-Range')!r} (from {redact_url(url)})"
        )


class _Spool:
    """A copy's scratch store of a v1 source's layers (and the config built from them), read by ``FileBody``."""

    def __init__(self, store: BlobStore, description: str) -> None:
        self.store = store
        self.description = description

    def open_blob(self, digest: Digest) -> BinaryIO:
        return self.store.open_reader(digest)


class _RelayBody:
    """A blob relayed from the source registry's GET into the target's upload request: one worker thread reads
    the GET's body from its connection and writes it to the request's (``BlobFetcher.relay_sender``), through one
    reused buffer, hashing each piece on the way (``SourceCheck``: the piece that completes a wrong blob is never
    sent). One GET serves consecutive requests (``PATCH`` chunks); a request from another offset (a retry) opens
    the source again there, with a ``Range``."""

    def __init__(self, api: RegistryAPI, source: Reference, desc: Descriptor, threads: asyncio.Semaphore) -> None:
        self._api = api
        self._source = source
        self._desc = desc
        self._threads = threads
        self._check = SourceCheck(desc, f"from {source.registry}/{source.repository}")
        self._response: httpx.Response | None = None
        self._reader: ResponseReader | None = None
        self._position = 0
        self._url = ""

    async def send(self, api: RegistryAPI, part: Part, advance: Callable[[int], None]) -> httpx.Response:
        fetcher = api.fetcher
        assert fetcher is not None, "a RegistryAPI that moves blobs has a BlobFetcher"
        if part.length == 0:
            # A zero-length blob: nothing to fetch, its digest checked as it is.
            await self.confirm()
            return await send_threaded(api, part, advance, self._threads, lambda count, cancel: lambda conn: None)
        reader = await self._at(part.offset)

        def sender_for(count: Callable[[int], None], cancel: threading.Event) -> BodySender:
            return fetcher.relay_sender(
                reader, part.offset, part.length, on_bytes=count, cancel=cancel, inspect=self._check.feed
            )

        try:
            response = await send_threaded(api, part, advance, self._threads, sender_for)
        except BaseException as error:
            # How much of the source went is unknown: the next request opens it again where it starts.
            await self.aclose()
            if isinstance(error, BodyBroken):
                raise TransportError(
                    f"blob {self._desc.digest}: {error.reason} (GET {redact_url(self._url)})"
                ) from None
            if isinstance(error, SourceTruncated):
                raise IntegrityError(
                    f"blob {self._desc.digest}: {error}: shorter than its descriptor (from {redact_url(self._url)})"
                ) from None
            raise
        self._position = part.offset + part.length
        return response

    async def _at(self, offset: int) -> ResponseReader:
        if self._reader is not None and self._position == offset:
            return self._reader
        await self.aclose()
        digest, size = self._desc.digest, self._desc.size
        self._url = url = await self._api.url(self._source.registry, v2.blob_path(self._source.repository, str(digest)))
        what = f"blob {digest} of {self._source.repository_ref}"
        headers = {"Range": range_request(offset)} if offset else None
        response = await self._api.send(
            "GET", url, what=what, headers=headers, expect=(200, 206) if offset else (200,), stream=True, keep_body=True
        )
        try:
            exchange = exchange_of(response)
            if exchange is None:
                raise ProtocolError(f"{what}: the response did not come over regtool's connections")
            start = 0 if response.status_code == 200 else offset
            if start:
                _check_content_range(response, offset, size, what, url)
            length = response.headers.get("Content-Length")
            if length is not None and (not length.isdigit() or int(length) != size - start):
                raise IntegrityError(
                    f"{what}: Content-Length {length} but {size - start} bytes expected from {redact_url(url)}"
                )
            reader = ResponseReader(exchange)
            if start < offset:
                # The registry ignored the Range: the bytes the session holds already are read (and hashed).
                await in_thread(self._skip, reader, offset, limiter=self._threads)
        except BaseException:
            await shielded(response.aclose())
            raise
        self._response, self._reader, self._position = response, reader, offset
        return reader

    def _skip(self, reader: ResponseReader, offset: int) -> None:
        view = memoryview(bytearray(min(_CHUNK, offset)))
        position = 0
        while position < offset:
            n = reader.readinto(view[: min(len(view), offset - position)])
            if not n:
                raise IntegrityError(f"blob {self._desc.digest}: the source ended at byte {position} of {offset}")
            self._check.feed(position, view[:n])
            position += n

    async def confirm(self) -> None:
        # A blob relayed whole was verified before its last piece went; one resumed mid-blob is verified by the
        # target's digest check on the closing PUT (module docstring).
        await in_thread(self._check.confirm)

    async def aclose(self) -> None:
        response, self._response, self._reader = self._response, None, None
        if response is not None:
            await shielded(response.aclose())


class _Uploads:
    """A copy's blobs into a v2 target through ``upload.BlobUploader`` (the push's upload: its mounts, and its
    sessions remembered on disk, so that a rerun continues an interrupted upload): relayed from a v2 source's GET,
    or sent from a spooled file."""

    def __init__(
        self,
        api: RegistryAPI,
        target: Reference,
        *,
        progress: Progress,
        tally: UploadTally,
        chunk_size: int | None,
        mount_from: Sequence[str],
        explicit: int,
        jobs: int,
        known_present: MutableSet[BlobPlace] | None = None,
    ) -> None:
        self.target = target
        self.progress = progress
        self.tally = tally
        self.uploader = BlobUploader(
            api, progress=progress, chunk_size=chunk_size, known_present=known_present, jobs=jobs
        )
        self.mount_from = tuple(mount_from)
        self.explicit = explicit

    async def file(self, desc: Descriptor, files: BlobFiles) -> None:
        """Make ``desc`` present at the target: skipped, mounted, resumed, or uploaded from its file in ``files``."""
        await self._upload(desc, self.uploader.file_body(files, desc))

    async def relay(self, desc: Descriptor, api: RegistryAPI, source: Reference) -> None:
        """The same for a blob of a v2 ``source``, relayed from its GET (``_RelayBody``)."""
        await self._upload(desc, _RelayBody(api, source, desc, self.uploader.threads))

    async def _upload(self, desc: Descriptor, body: UploadBody) -> None:
        self.tally.count(
            await self.uploader.upload(self.target, desc, body, mount_from=self.mount_from, explicit=self.explicit)
        )


# -- reading a v2 source --------------------------------------------------------------------------------------


async def _v2_image(api: RegistryAPI, source: Reference, platform: Platform | None) -> tuple[Manifest, bytes]:
    """The source's image manifest (an index resolved to ``platform``, default this machine's) and config."""
    # The resolution a pull makes: the same platform choice, and the same error for a platform the index lacks.
    manifest = (await resolve_image(api, source, platform, purpose="copy")).image
    if manifest is None or manifest.config is None:
        raise ImageFormatError(f"{source}: an image manifest without a config cannot be copied to registry v1")
    chunks: list[bytes] = []
    async with _v2_blob_chunks(api, source, manifest.config.digest, manifest.config.size) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            if sum(map(len, chunks)) > _CONFIG_LIMIT:
                raise ProtocolError(f"{source}: config {manifest.config.digest} larger than {_CONFIG_LIMIT} bytes")
    return manifest, b"".join(chunks)


def _check_target_digest(target: Reference, digest: Digest) -> None:
    """A target named by digest must name what is copied (as push refuses it)."""
    if target.digest is not None and target.digest != digest:
        raise UsageError(f"{target}: the source's manifest is {digest}, not the digest in the reference")


def _destination(target: Reference, digest: Digest) -> Reference:
    """Where the copied manifest goes: the target's tag (its digest was checked), else by digest."""
    if target.tag is not None:
        return Reference(target.registry, target.repository, target.tag)
    return target.with_digest(digest)


# -- the four directions ------------------------------------------------------------------------------------


async def _v2_to_v2(
    api: RegistryAPI,
    source: Reference,
    target: Reference,
    uploads: _Uploads,
    platform: Platform | None,
    jobs: int,
) -> Digest:
    # The resolution a pull makes, so that --platform picks (or fails to find) the same manifest as a pull does;
    # without a platform, the whole index tree, children first.
    for registry in (source.registry, target.registry):
        api.preconnect(await api.base_url(registry), PRECONNECT_PER_JOB * jobs)
    plan = await plan_images(api, source, platform=platform, all_platforms=platform is None, jobs=jobs)
    named = plan.entry
    _check_target_digest(target, named.digest)
    for manifest in plan.manifests:
        if manifest.kind not in {"image", "index"} or (manifest.kind == "image" and manifest.config is None):
            raise ImageFormatError(f"{source}: cannot copy a {manifest.kind} manifest ({manifest.digest})")
    for image in plan.images:
        report_image(uploads.progress, image)

    async def one(descriptor: Descriptor) -> None:
        await uploads.relay(descriptor, api, source)

    # Largest first, so the long transfers start early and the tail is short.
    await run_bounded(sorted(plan.blobs(), key=lambda d: -d.size), one, jobs, size_of=lambda d: d.size)
    for manifest in plan.manifests:
        if manifest is not named:
            await api.put_manifest(target.with_digest(manifest.digest), manifest)
    return await api.put_manifest(_destination(target, named.digest), named)


def _v2_layer_opener(api: RegistryAPI, source: Reference, descriptor: Descriptor) -> LayerOpener:
    def opener() -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return _v2_blob_chunks(api, source, descriptor.digest, descriptor.size)

    return opener


async def _v2_to_v1(
    api: RegistryAPI,
    source: Reference,
    target: Reference,
    v1_target: V1Api,
    platform: Platform | None,
    progress: Progress,
    tally: UploadTally,
) -> str:
    manifest, config = await _v2_image(api, source, platform)
    chain = v1_chain_from_config(config)
    if len(chain) != len(manifest.layers):
        raise ImageFormatError(f"{source}: the config lists {len(chain)} diff_ids for {len(manifest.layers)} layers")
    layers = [
        V1Layer(image, descriptor.size, _v2_layer_opener(api, source, descriptor))
        for image, descriptor in zip(chain, manifest.layers, strict=True)
    ]
    stats = await push_v1_chain(v1_target, target.repository, target.tag or "latest", layers, progress=progress)
    tally.uploaded, tally.skipped, tally.bytes = stats.uploaded, stats.skipped, stats.bytes_uploaded
    return chain[-1].id


def _v1_layer_opener(v1_source: V1Api, image_id: str, json_bytes: bytes, expected: frozenset[str]) -> LayerOpener:
    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[AsyncIterator[bytes]]:
        async with v1_source.open_layer(image_id) as response:

            async def chunks() -> AsyncIterator[bytes]:
                payload = payload_checksum(json_bytes)
                pending: bytes | None = None
                with mapped_errors("GET", response.request.url):
                    async for chunk in response.aiter_raw(_CHUNK):
                        await in_thread(payload.update, chunk)
                        if pending is not None:
                            yield pending
                        pending = chunk
                actual = "sha256:" + payload.hexdigest()
                if expected and actual not in expected:
                    raise IntegrityError(
                        f"v1 layer {image_id} from {v1_source.endpoint}: payload checksum mismatch: "
                        f"registry says {', '.join(sorted(expected))}, got {actual}"
                    )
                if pending is not None:
                    yield pending

            yield chunks()

    return opener


async def _v1_image(v1_source: V1Api, metas: dict[str, V1ImageMeta], image_id: str) -> tuple[V1ImageMeta, V1Image]:
    """An image of the chain: its metadata as the chain walk found it (else fetched now), its JSON checked to
    name ``image_id``."""
    meta = metas.get(image_id) or await v1_source.image_json(image_id)
    image = registry_image(meta.json, where=f"v1 image {image_id} at {v1_source.endpoint}")
    if image.id != image_id:
        raise IntegrityError(f"v1 image {image_id} at {v1_source.endpoint}: its JSON says id {image.id}")
    return meta, image


async def _v1_to_v1(
    source: Reference, target: Reference, v1_source: V1Api, v1_target: V1Api, progress: Progress, tally: UploadTally
) -> str:
    _top, chain_ids, metas = await fetch_chain(v1_source, source)
    layers: list[V1Layer] = []
    for image_id in chain_ids:
        meta, image = await _v1_image(v1_source, metas, image_id)
        layers.append(
            V1Layer(image, meta.size, _v1_layer_opener(v1_source, image_id, meta.json, meta.payload_checksums))
        )
    stats = await push_v1_chain(v1_target, target.repository, target.tag or "latest", layers, progress=progress)
    tally.uploaded, tally.skipped, tally.bytes = stats.uploaded, stats.skipped, stats.bytes_uploaded
    return chain_ids[-1]


async def _v1_to_v2(
    api: RegistryAPI, source: Reference, target: Reference, v1_source: V1Api, uploads: _Uploads
) -> tuple[Digest, str]:
    top, chain_ids, metas = await fetch_chain(v1_source, source)
    jsons: list[bytes] = []
    descriptors: list[Descriptor] = []
    diff_ids: list[str] = []
    with tempfile.TemporaryDirectory(prefix="regtool-copy-") as spool_dir:
        spool = _Spool(BlobStore(Path(spool_dir)), f"{source} (spooled)")
        for image_id in chain_ids:
            # Serial, root first, as a v1 pull: one spooled layer on disk at a time.
            meta, _image = await _v1_image(v1_source, metas, image_id)
            stored = await download_layer(v1_source, spool.store, image_id, meta, NullProgress())
            try:
                await uploads.file(stored.descriptor, spool)
            finally:
                spool.store.path(stored.descriptor.digest).unlink(missing_ok=True)
            jsons.append(meta.json)
            descriptors.append(stored.descriptor)
            diff_ids.append(str(stored.diff_id))
        config = config_from_v1(jsons, diff_ids)
        config_descriptor = Descriptor(mt.OCI_CONFIG, spool.store.put_bytes(None, config), len(config))
        await uploads.file(config_descriptor, spool)
    raw = oci_manifest(config_descriptor, descriptors)
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    # Built from the copied layers, so known only now: checked before anything names it.
    _check_target_digest(target, manifest.digest)
    digest = await api.put_manifest(_destination(target, manifest.digest), manifest)
    return digest, top


async def copy_image(
    api: RegistryAPI,
    source: Reference,
    target: Reference,
    *,
    v1_source: V1Api | None = None,
    v1_target: V1Api | None = None,
    platform: Platform | None = None,
    progress: Progress | None = None,
    jobs: int = 4,
    mount_from: Sequence[str] = (),
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    known_present: MutableSet[BlobPlace] | None = None,
) -> CopyResult:
    """Copy ``source`` to ``target``. A ``v1_source`` / ``v1_target`` session means that end speaks v1;
    otherwise it is v2 through ``api``. See the module docstring for what each direction does.

    A v2 target mounts blobs from the ``mount_from`` repositories of its registry (and, for a v2 source on the
    same registry, from the source repository) and uploads the others in one ``PUT`` up to ``chunk_size`` bytes,
    in ``PATCH`` chunks of that size above it (None: always one ``PUT``).

    ``known_present`` holds the blobs already known to be at a target (filled as blobs are found, uploaded or
    mounted): a caller copying many images that share layers passes one set to every copy, so each shared blob
    costs one HEAD or upload for the whole run instead of one per image.
    """
    progress = progress or NullProgress()
    started = time.monotonic()
    tally = UploadTally()
    digest: Digest | None = None
    image_id: str | None = None
    if v1_target is not None and target.digest is not None:
        raise UsageError(f"{target}: registry v1 has no manifest digests; name the target by tag")
    # Mounting from the source repository is worth a try only when it holds v2 blobs on the target's registry.
    inferred = v1_source is None and source.registry == target.registry and source.repository not in mount_from
    mounts = (*mount_from, *((source.repository,) if inferred else ()))
    uploads = _Uploads(
        api,
        target,
        progress=progress,
        tally=tally,
        chunk_size=chunk_size,
        mount_from=mounts,
        explicit=len(mount_from),
        jobs=jobs,
        known_present=known_present,
    )
    if v1_source is None and v1_target is None:
        digest = await _v2_to_v2(api, source, target, uploads, platform, jobs)
    elif v1_source is None and v1_target is not None:
        image_id = await _v2_to_v1(api, source, target, v1_target, platform, progress, tally)
    elif v1_source is not None and v1_target is None:
        digest, image_id = await _v1_to_v2(api, source, target, v1_source, uploads)
    else:
        assert v1_source is not None and v1_target is not None
        image_id = await _v1_to_v1(source, target, v1_source, v1_target, progress, tally)
    return CopyResult(
        source=str(source),
        target=str(target),
        source_protocol="v1" if v1_source is not None else "v2",
        target_protocol="v1" if v1_target is not None else "v2",
        digest=digest,
        image_id=image_id,
        blobs_copied=tally.uploaded,
        blobs_skipped=tally.skipped,
        bytes_copied=tally.bytes,
        seconds=time.monotonic() - started,
        blobs_mounted=tally.mounted,
    )
