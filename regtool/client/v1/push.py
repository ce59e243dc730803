"""Push over registry v1 in the docker engine's order (protocols.md §2.3).

::

    GET /v1/_ping
    PUT /v1/repositories/<repo>/                  the image index, X-Docker-Token: true -> token, endpoints
    GET /v1/images/<id>/json                      for every image: 200 means "already there, skip it"
    for each missing image, root first:
        PUT /v1/images/<id>/json                  (409 "Image already exists" -> skip)
        PUT /v1/images/<id>/layer                 streamed, chunked; the payload checksum is hashed on the way
        PUT /v1/images/<id>/checksum              X-Docker-Checksum-Payload: sha256(json + "\\n" + layer)
    PUT /v1/repositories/<ns>/<repo>/tags/<tag>   "<top id>"
    PUT /v1/repositories/<repo>/images            [] -> must answer 204

:func:`push_v1_chain` is the core: it takes v1 images with a way to stream each layer, so a local image
(:func:`push_v1`, from an OCI layout or a docker-archive) and a registry-to-registry copy share it. Local images
get deterministic v1 ids (``convert.v1_chain_from_config``), so pushing the same image again skips every layer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from regtool.client.progress import NullProgress, Progress
from regtool.client.results import PushResult
from regtool.client.tasks import run_bounded
from regtool.client.threads import in_thread
from regtool.client.v1.api import V1Api
from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError, IntegrityError, UnsupportedProtocolError
from regtool.image.convert import V1Image, payload_checksum, v1_chain_from_config
from regtool.image.source import ImageSource, open_source
from regtool.manifest import Descriptor, Manifest
from regtool.platform import host_platform, select_image
from regtool.reference import Reference

__all__ = [
    "LayerOpener",
    "V1Layer",
    "V1PushStats",
    "file_chunks",
    "image_manifest",
    "local_v1_layers",
    "push_v1",
    "push_v1_chain",
]

_CHUNK = 1 << 20
# The engine checked which images the registry already had with up to 5 concurrent GETs.
_CHECK_WORKERS = 5

LayerOpener = Callable[[], AbstractAsyncContextManager[AsyncIterator[bytes]]]


@dataclass(frozen=True, slots=True)
class V1Layer:
    """One image of a chain to push: its id/parent/JSON, its layer size if known, and how to stream the layer.

    ``open()`` is an async context manager yielding the layer's bytes; it may verify what it streamed (and
    raise IntegrityError before the last chunk, so a bad layer never completes its upload).
    """

    image: V1Image
    size: int | None
    open: LayerOpener


@dataclass(frozen=True, slots=True)
class V1PushStats:
    uploaded: int
    skipped: int
    bytes_uploaded: int


async def push_v1_chain(
    api: V1Api,
    repository: str,
    tag: str,
    layers: Sequence[V1Layer],
    *,
    progress: Progress | None = None,
) -> V1PushStats:
    """Push ``layers`` (root first, the last one tagged ``tag``) to ``repository`` in the engine's order."""
    progress = progress or NullProgress()
    if not layers:
        raise ImageFormatError(f"v1 push to {repository}: the image has no layers")
    ping = await api.ping()
    if not ping.found:
        raise UnsupportedProtocolError(
            f"{api.index_url} does not speak registry v1 (GET /v1/_ping answered HTTP {ping.status})"
        )
    top = layers[-1].image.id
    index = [
        {"id": layer.image.id, "Tag": tag} if layer.image.id == top else {"id": layer.image.id} for layer in layers
    ]
    await api.put_repository(repository, index)

    present: dict[str, bool] = {}

    async def check(layer: V1Layer) -> None:
        present[layer.image.id] = await api.image_exists(layer.image.id)

    await run_bounded(layers, check, _CHECK_WORKERS)
    uploaded = skipped = sent_total = 0
    for layer in layers:
        image = layer.image
        key = f"v1:{image.id}"
        if present[image.id] or not await api.put_image_json(image.id, image.json):
            progress.start(key, f"layer {image.id[:12]}", layer.size)
            progress.finish(key, status="skipped")
            skipped += 1
            continue
        sent_total += await _upload_layer(api, layer, progress)
        uploaded += 1
    await api.put_tag(repository, tag, top)
    await api.put_repository_images(repository, [])
    return V1PushStats(uploaded, skipped, sent_total)


async def _upload_layer(api: V1Api, layer: V1Layer, progress: Progress) -> int:
    """PUT one image's layer (streamed, hashing the payload checksum on the way), then its checksum."""
    image = layer.image
    key = f"v1:{image.id}"
    progress.start(key, f"layer {image.id[:12]}", layer.size)
    payload = payload_checksum(image.json)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        async with layer.open() as chunks:
            async for chunk in chunks:
                await in_thread(payload.update, chunk)
                sent += len(chunk)
                progress.advance(key, len(chunk))
                yield chunk

    try:
        await api.put_layer(image.id, body())
        await api.put_checksum(image.id, "sha256:" + payload.hexdigest())
    except BaseException:
        progress.finish(key, status="failed")
        raise
    progress.finish(key)
    return sent


def file_chunks(source: ImageSource, layer_digest: Digest) -> LayerOpener:
    """A LayerOpener streaming a blob of ``source`` from disk in 1 MiB reads (worker threads), verified.

    The bytes are hashed as they are read and the last chunk is held back until the whole blob matched
    ``layer_digest`` (and the source's size): a corrupt blob raises IntegrityError before its upload completes.
    """

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[AsyncIterator[bytes]]:
        f = await in_thread(source.open_blob, layer_digest)

        async def chunks() -> AsyncIterator[bytes]:
            verifier = DigestVerifier(layer_digest.algorithm)
            pending: bytes | None = None
            while chunk := await in_thread(f.read, _CHUNK):
                await in_thread(verifier.update, chunk)
                if pending is not None:
                    yield pending
                pending = chunk
            actual = verifier.digest()
            if actual != layer_digest or verifier.size != source.blob_size(layer_digest):
                raise IntegrityError(
                    f"blob {layer_digest}: the source's bytes hash to {actual}, not to the digest the manifest "
                    f"names; refused before the registry stored it ({source.description})"
                )
            if pending is not None:
                yield pending

        try:
            yield chunks()
        finally:
            # Synchronous on purpose: in a cancelled scope an awaited close would never run (a leaked file).
            f.close()

    return opener


async def image_manifest(source: ImageSource) -> Manifest:
    """The source's image manifest; for an index, the image of this machine's platform (``select_image``, as a
    pull resolves one)."""
    root = source.root
    if root.kind not in {"image", "index"}:
        raise ImageFormatError(f"{source.description}: a {root.kind} manifest cannot be pushed over registry v1")

    async def local(entries: Sequence[Descriptor]) -> list[Manifest]:
        return [source.manifest(entry.digest) for entry in entries]

    resolved = await select_image(root, host_platform(), local, where=source.description)
    assert resolved.image is not None, "select_image without optional resolves to an image"
    return resolved.image


def local_v1_layers(source: ImageSource, manifest: Manifest) -> tuple[list[V1Layer], bytes]:
    """The v1 chain of a local image (deterministic ids from its config) with openers for its layer blobs."""
    if manifest.config is None:
        raise ImageFormatError(f"{source.description}: the image manifest has no config")
    with source.open_blob(manifest.config.digest) as f:
        config = f.read(16 << 20)
    chain = v1_chain_from_config(config)
    if len(chain) != len(manifest.layers):
        raise ImageFormatError(
            f"{source.description}: the config lists {len(chain)} diff_ids for {len(manifest.layers)} layers"
        )
    layers = [
        V1Layer(image, source.blob_size(descriptor.digest), file_chunks(source, descriptor.digest))
        for image, descriptor in zip(chain, manifest.layers, strict=True)
    ]
    return layers, config


async def push_v1(
    api: V1Api,
    source_spec: str,
    ref: Reference,
    *,
    progress: Progress | None = None,
) -> PushResult:
    """Push a local image (OCI layout ``dir[:tag]`` or docker-archive ``file.tar``) to ``ref`` over v1."""
    if ref.digest is not None:
        raise UnsupportedProtocolError(f"{ref}: registry v1 cannot push by digest; use a tag")
    started = time.monotonic()
    with await in_thread(open_source, source_spec) as source:
        manifest = await image_manifest(source)
        layers, _config = await in_thread(local_v1_layers, source, manifest)
        stats = await push_v1_chain(api, ref.repository, ref.tag or "latest", layers, progress=progress)
        recompressed = source.recompressed
    return PushResult(
        reference=str(ref),
        digest=manifest.digest,
        media_type=manifest.media_type,
        protocol="v1",
        blobs_uploaded=stats.uploaded,
        blobs_skipped=stats.skipped,
        bytes_uploaded=stats.bytes_uploaded,
        recompressed=recompressed,
        seconds=time.monotonic() - started,
    )
