"""Registry to registry copy, across protocols: v2 -> v2, v1 -> v2 (migrate), v2 -> v1, v1 -> v1.

No local copy of the image is made. Blobs stream from the source to the target and are verified on the way:

- **v2 -> v2**: each missing blob (HEAD first) is streamed GET -> PUT with its digest checked; an index is
  copied with all its child manifests; manifests keep their exact bytes, so digests are unchanged.
- **v2 -> v1**: the v1 chain is derived from the config (deterministic ids, ``convert.v1_chain_from_config``)
  and each layer blob streams from the v2 GET into the v1 layer PUT; a digest mismatch aborts the PUT before
  it completes, so the registry never sees the image finished.
- **v1 -> v2**: the v1 chain is walked serially (as in a v1 pull); each layer is spooled to one temporary
  file (a v2 upload needs its digest, and the config needs the uncompressed diff_id), checked against the
  payload checksum, uploaded, and deleted. bzip2/xz layers are uploaded decompressed. The config is
  synthesized from the v1 JSON (protocols.md §6.2) and an OCI manifest pushed last.
- **v1 -> v1**: the real v1 ids and JSON are kept; layers stream through, checked against the payload checksum.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from regtool.client.progress import NullProgress, Progress
from regtool.client.registry_api import RegistryAPI, error_for_response
from regtool.client.tasks import run_bounded
from regtool.client.transport import mapped_errors, redact_url
from regtool.client.v1api import V1Api
from regtool.client.v1pull import download_layer, fetch_chain
from regtool.client.v1push import LayerOpener, V1Layer, push_v1_chain
from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError, IntegrityError, ProtocolError
from regtool.image.blobstore import BlobStore
from regtool.image.convert import (
    V1Image,
    config_from_v1,
    oci_manifest,
    parse_v1_json,
    payload_checksum,
    v1_chain_from_config,
)
from regtool.manifest import Descriptor, Manifest, Platform, index_tree, parse_manifest
from regtool.platform import host_platform, select_manifest
from regtool.protocol import mediatypes as mt
from regtool.protocol import v2
from regtool.reference import Reference

__all__ = ["CopyResult", "copy_image"]

_CHUNK = 1 << 20
_CONFIG_LIMIT = 16 << 20


@dataclass(frozen=True, slots=True)
class CopyResult:
    """A finished copy: both ends and protocols, the target manifest digest (v2) or top image id (v1)."""

    source: str
    target: str
    source_protocol: str
    target_protocol: str
    digest: Digest | None
    image_id: str | None
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "source_protocol": self.source_protocol,
            "target_protocol": self.target_protocol,
            "digest": str(self.digest) if self.digest is not None else None,
            "image_id": self.image_id,
            "blobs_copied": self.blobs_copied,
            "blobs_skipped": self.blobs_skipped,
            "bytes_copied": self.bytes_copied,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Tally:
    copied: int = 0
    skipped: int = 0
    bytes: int = 0


# -- v2 blobs: stream out, stream in ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _v2_blob_chunks(
    api: RegistryAPI, ref: Reference, digest: Digest, size: int | None
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream a v2 blob, verifying digest and size before the last chunk is handed on."""
    url = await api.url(ref.registry, v2.blob_path(ref.repository, str(digest)))
    async with api.stream("GET", url, what=f"blob {digest} of {ref.repository_ref}") as response:

        async def chunks() -> AsyncIterator[bytes]:
            verifier = DigestVerifier(digest.algorithm)
            pending: bytes | None = None
            with mapped_errors("GET", url):
                async for chunk in response.aiter_raw(_CHUNK):
                    await anyio.to_thread.run_sync(verifier.update, chunk)
                    if pending is not None:
                        yield pending
                    pending = chunk
            # Hold the last chunk back until the whole blob verified, so a bad blob never completes an upload.
            verifier.verify(digest, size, what=f"blob from {redact_url(url)}")
            if pending is not None:
                yield pending

        yield chunks()


async def _upload_v2_blob(
    api: RegistryAPI, target: Reference, digest: Digest, size: int | None, body: AsyncIterator[bytes]
) -> None:
    """POST an upload session, then PUT ``?digest=`` with the streamed body (a monolithic upload)."""
    name = target.repository
    start = await api.url(target.registry, v2.uploads_path(name))
    # Shielded: a sibling's failure must not cancel us between the server opening a session and our learning its
    # Location, or the session could never be cancelled below and would linger until the server purges it.
    with anyio.CancelScope(shield=True):
        response = await api.send("POST", start, what=f"upload to {target.repository_ref}", expect=(202,))
    location = response.headers.get("Location")
    if not location:
        raise ProtocolError(f"upload to {target.repository_ref}: no Location in the 202 (from {redact_url(start)})")
    url = httpx.URL(start).join(location)
    url = url.copy_merge_params({"digest": str(digest)})
    headers = {"Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    request = api.http.build_request("PUT", url, headers=headers, content=body)
    try:
        with mapped_errors("PUT", url):
            put = await api.http.send(request, stream=True)
    except BaseException:
        # The source failed mid-blob (or the connection did): drop the upload session, best effort.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await api.send(
                "DELETE", str(httpx.URL(start).join(location)), what="cancel upload", expect=None, retry=False
            )
        raise
    try:
        if put.status_code not in (201, 204):
            raise error_for_response(put, f"blob {digest} to {target.repository_ref}", await put.aread())
    finally:
        await put.aclose()


async def _copy_v2_blob(
    api: RegistryAPI, source: Reference, target: Reference, descriptor: Descriptor, progress: Progress, tally: _Tally
) -> None:
    key = str(descriptor.digest)
    progress.start(key, f"blob {descriptor.digest.short}", descriptor.size)
    if await api.blob_size(target.registry, target.repository, descriptor.digest) is not None:
        progress.finish(key, status="skipped")
        tally.skipped += 1
        return

    async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            progress.advance(key, len(chunk))
            yield chunk

    try:
        async with _v2_blob_chunks(api, source, descriptor.digest, descriptor.size) as chunks:
            await _upload_v2_blob(api, target, descriptor.digest, descriptor.size, counted(chunks))
    except BaseException:
        progress.finish(key, status="failed")
        raise
    progress.finish(key)
    tally.copied += 1
    tally.bytes += descriptor.size


async def _upload_v2_file(
    api: RegistryAPI, target: Reference, path: Path, digest: Digest, size: int, progress: Progress, tally: _Tally
) -> None:
    key = str(digest)
    progress.start(key, f"blob {digest.short}", size)
    if await api.blob_size(target.registry, target.repository, digest) is not None:
        progress.finish(key, status="skipped")
        tally.skipped += 1
        return

    async def chunks() -> AsyncIterator[bytes]:
        f = await anyio.to_thread.run_sync(path.open, "rb")
        try:
            while chunk := await anyio.to_thread.run_sync(f.read, _CHUNK):
                progress.advance(key, len(chunk))
                yield chunk
        finally:
            # Synchronous on purpose: in a cancelled scope an awaited close would never run (a leaked file).
            f.close()

    await _upload_v2_blob(api, target, digest, size, chunks())
    progress.finish(key)
    tally.copied += 1
    tally.bytes += size


async def _put_small_blob(api: RegistryAPI, target: Reference, data: bytes, tally: _Tally) -> Digest:
    digest = Digest.of(data)
    if await api.blob_size(target.registry, target.repository, digest) is not None:
        tally.skipped += 1
        return digest

    async def body() -> AsyncIterator[bytes]:
        yield data

    await _upload_v2_blob(api, target, digest, len(data), body())
    tally.copied += 1
    tally.bytes += len(data)
    return digest


# -- reading a v2 source --------------------------------------------------------------------------------------


async def _v2_image(api: RegistryAPI, source: Reference, platform: Platform | None) -> tuple[Manifest, bytes]:
    """The source's image manifest (an index resolved to ``platform``, default this machine's) and config."""
    manifest = await api.get_manifest(source)
    if manifest.is_index:
        entry = select_manifest(manifest.manifests, platform or host_platform(), where=str(source))
        manifest = await api.get_manifest(source.with_digest(entry.digest))
    if manifest.kind != "image" or manifest.config is None:
        raise ImageFormatError(f"{source}: a {manifest.kind} manifest cannot be copied to registry v1")
    chunks: list[bytes] = []
    async with _v2_blob_chunks(api, source, manifest.config.digest, manifest.config.size) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            if sum(map(len, chunks)) > _CONFIG_LIMIT:
                raise ProtocolError(f"{source}: config {manifest.config.digest} larger than {_CONFIG_LIMIT} bytes")
    return manifest, b"".join(chunks)


# -- the four directions ------------------------------------------------------------------------------------


async def _v2_to_v2(
    api: RegistryAPI, source: Reference, target: Reference, progress: Progress, jobs: int, tally: _Tally
) -> Digest:
    root = await api.get_manifest(source)
    if root.kind == "schema1":
        raise ImageFormatError(f"{source}: schema1 manifests are not copied; pull and push the image instead")
    children: list[Manifest] = []
    if root.is_index:

        async def remote(entries: Sequence[Descriptor]) -> list[Manifest]:
            return [await api.get_manifest(source.with_digest(entry.digest)) for entry in entries]

        children = await index_tree(root, remote, where=str(source))
    for manifest in [*children, root] if root.is_index else [root]:
        if manifest.kind == "index":
            continue
        if manifest.kind != "image" or manifest.config is None:
            raise ImageFormatError(f"{source}: cannot copy a {manifest.kind} manifest ({manifest.digest})")
        blobs = [manifest.config, *(layer for layer in manifest.layers if not layer.urls)]

        async def one(descriptor: Descriptor) -> None:
            await _copy_v2_blob(api, source, target, descriptor, progress, tally)

        await run_bounded(blobs, one, jobs)
    for child in children:
        await api.put_manifest(target.with_digest(child.digest), child)
    destination = target if target.tag is not None else target.with_digest(root.digest)
    return await api.put_manifest(destination, root)


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
    tally: _Tally,
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
    tally.copied += stats.uploaded
    tally.skipped += stats.skipped
    tally.bytes += stats.bytes_uploaded
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
                        await anyio.to_thread.run_sync(payload.update, chunk)
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


async def _v1_to_v1(
    source: Reference, target: Reference, v1_source: V1Api, v1_target: V1Api, progress: Progress, tally: _Tally
) -> str:
    _top, chain_ids, metas = await fetch_chain(v1_source, source)
    layers: list[V1Layer] = []
    for image_id in chain_ids:
        meta = metas.get(image_id) or await v1_source.image_json(image_id)
        image: V1Image = parse_v1_json(meta.json, where=f"v1 image {image_id} at {v1_source.endpoint}")
        if image.id != image_id:
            raise IntegrityError(f"v1 image {image_id} at {v1_source.endpoint}: its JSON says id {image.id}")
        layers.append(
            V1Layer(image, meta.size, _v1_layer_opener(v1_source, image_id, meta.json, meta.payload_checksums))
        )
    stats = await push_v1_chain(v1_target, target.repository, target.tag or "latest", layers, progress=progress)
    tally.copied += stats.uploaded
    tally.skipped += stats.skipped
    tally.bytes += stats.bytes_uploaded
    return chain_ids[-1]


async def _v1_to_v2(
    api: RegistryAPI, source: Reference, target: Reference, v1_source: V1Api, progress: Progress, tally: _Tally
) -> tuple[Digest, str]:
    top, chain_ids, metas = await fetch_chain(v1_source, source)
    jsons: list[bytes] = []
    descriptors: list[Descriptor] = []
    diff_ids: list[str] = []
    with tempfile.TemporaryDirectory(prefix="regtool-copy-") as spool_dir:
        spool = BlobStore(Path(spool_dir))
        for image_id in chain_ids:
            # Serial, root first, as a v1 pull: one spooled layer on disk at a time.
            meta = metas.get(image_id) or await v1_source.image_json(image_id)
            image = parse_v1_json(meta.json, where=f"v1 image {image_id} at {v1_source.endpoint}")
            if image.id != image_id:
                raise IntegrityError(f"v1 image {image_id} at {v1_source.endpoint}: its JSON says id {image.id}")
            stored = await download_layer(v1_source, spool, image_id, meta, NullProgress())
            path = spool.path(stored.descriptor.digest)
            try:
                await _upload_v2_file(
                    api, target, path, stored.descriptor.digest, stored.descriptor.size, progress, tally
                )
            finally:
                path.unlink(missing_ok=True)
            jsons.append(meta.json)
            descriptors.append(stored.descriptor)
            diff_ids.append(str(stored.diff_id))
    config = config_from_v1(jsons, diff_ids)
    config_digest = await _put_small_blob(api, target, config, tally)
    raw = oci_manifest(Descriptor(mt.OCI_CONFIG, config_digest, len(config)), descriptors)
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    digest = await api.put_manifest(target if target.tag is not None else target.with_digest(manifest.digest), manifest)
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
) -> CopyResult:
    """Copy ``source`` to ``target``. A ``v1_source`` / ``v1_target`` session means that end speaks v1;
    otherwise it is v2 through ``api``. See the module docstring for what each direction does."""
    progress = progress or NullProgress()
    started = time.monotonic()
    tally = _Tally()
    digest: Digest | None = None
    image_id: str | None = None
    if v1_source is None and v1_target is None:
        digest = await _v2_to_v2(api, source, target, progress, jobs, tally)
    elif v1_source is None and v1_target is not None:
        image_id = await _v2_to_v1(api, source, target, v1_target, platform, progress, tally)
    elif v1_source is not None and v1_target is None:
        digest, image_id = await _v1_to_v2(api, source, target, v1_source, progress, tally)
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
        blobs_copied=tally.copied,
        blobs_skipped=tally.skipped,
        bytes_copied=tally.bytes,
        seconds=time.monotonic() - started,
    )
