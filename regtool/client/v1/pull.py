"""Pull over registry v1: the docker engine's serial walk of an image's parent chain (protocols.md §2.2).

The sequence, as docker <= 1.9 sent it::

    GET /v1/_ping
    GET /v1/repositories/<repo>/images        (X-Docker-Token: true; keeps the token and X-Docker-Endpoints)
    GET /v1/repositories/<ns>/<repo>/tags/<tag>   -> the top image id
    GET /v1/images/<top>/ancestry             -> [top, parent, ..., root]
    for each image, root first:  GET /v1/images/<id>/json ; GET /v1/images/<id>/layer

A v1 image JSON names only its parent, so without ``/ancestry`` the chain can only be learnt by fetching one
JSON after another; with it, the engine still fetched layer after layer (``FIXME: Launch the getRemoteImage()
in goroutines``). That serial walk is the default here. ``jobs > 1`` behaves like docker >= 1.10: all JSON
documents first, serially, then the layers concurrently (at most ``jobs`` at once).

Each layer is streamed to a staging file while three hashes run: the blob digest, the v1 payload checksum
``sha256(json + "\\n" + layer)`` (checked against ``X-Docker-Payload-Checksum`` / ``X-Docker-Checksum-Payload``
when the registry sends one) and, in a second local pass, the diff_id of the decompressed tar. gzip, zstd and
plain tars are kept as they came; bzip2 and xz layers, which OCI has no media type for, are stored
decompressed. The result is an OCI layout (config synthesized from the v1 JSON, protocols.md §6.2) or a
docker-archive that keeps the real v1 ids and JSON.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from regtool import mediatypes as mt
from regtool.client.progress import NullProgress, Progress
from regtool.client.results import PullResult
from regtool.client.tasks import run_bounded
from regtool.client.threads import in_thread, shielded
from regtool.client.v1.api import V1Api, V1ImageMeta
from regtool.digest import Digest, DigestVerifier
from regtool.errors import (
    ImageFormatError,
    IntegrityError,
    ProtocolError,
    RegtoolError,
    TransportError,
    UnsupportedProtocolError,
)
from regtool.files import remove_orphans
from regtool.image import docker_archive
from regtool.image.blobstore import BlobStore
from regtool.image.compression import open_decompressed
from regtool.image.convert import (
    V1Image,
    config_from_v1,
    diff_id_of,
    layer_media_type,
    oci_manifest,
    order_chain,
    parse_v1_json,
    payload_checksum,
)
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Descriptor, Manifest, parse_manifest
from regtool.reference import Reference

__all__ = ["StoredLayer", "V1PullOutcome", "download_layer", "fetch_chain", "pull_v1"]

_CHUNK = 1 << 20
_RESUMES = 5
# A killed pull's scratch: a docker-archive's work directory beside it, a layer's partial in the staging area
# (both named with the pid, for ``remove_orphans``: a v1 layer is fetched whole again, never resumed).
_WORK_PREFIX = ".regtool-v1-"
_PARTIAL_PREFIX = "v1-"


@dataclass(frozen=True, slots=True)
class V1PullOutcome:
    """What a v1 pull produced: the top image id, its chain (root first), and the OCI manifest it became."""

    image_id: str
    chain: tuple[V1Image, ...]
    manifest: Manifest
    config: bytes
    layers_downloaded: int
    bytes_downloaded: int
    seconds: float

    def result(self, ref: Reference, dest: Path, format: str) -> PullResult:
        """This pull of ``ref`` into ``dest`` as the client reports every pull (protocol ``v1``)."""
        return PullResult(
            reference=str(ref),
            digest=self.manifest.digest,
            media_type=self.manifest.media_type,
            dest=str(dest),
            format=format,
            protocol="v1",
            blobs_downloaded=self.layers_downloaded,
            bytes_downloaded=self.bytes_downloaded,
            seconds=self.seconds,
        )


@dataclass(frozen=True, slots=True)
class StoredLayer:
    """A downloaded v1 layer as stored: its OCI descriptor, its diff_id and the bytes received."""

    descriptor: Descriptor
    diff_id: Digest
    received: int


def registry_image(raw: bytes, *, where: str) -> V1Image:
    """An image JSON a registry served, parsed: one that does not parse is the registry's fault (ProtocolError,
    exit 1), not the user's input."""
    try:
        return parse_v1_json(raw, where=where)
    except ImageFormatError as exc:
        raise ProtocolError(str(exc)) from None


async def fetch_chain(api: V1Api, ref: Reference) -> tuple[str, list[str], dict[str, V1ImageMeta]]:
    """Steps 1-4a of the engine's v1 pull: ping, repository images, tag, ancestry (or the ``parent`` walk).

    Returns the top image id, the chain root first, and the image JSONs already fetched on the way (only the
    ``parent`` walk fetches them here).
    """
    if ref.digest is not None:
        raise UnsupportedProtocolError(f"{ref}: registry v1 cannot pull by digest; use a tag")
    ping = await api.ping()
    if not ping.found:
        raise UnsupportedProtocolError(
            f"{ref.registry} does not speak registry v1 (GET /v1/_ping answered HTTP {ping.status})"
        )
    await api.repository_images(ref.repository)
    top = await api.tag(ref.repository, ref.tag or "latest")
    metas: dict[str, V1ImageMeta] = {}
    ancestry = await api.ancestry(top)
    if ancestry is None:
        # No /ancestry: learn the chain one JSON at a time, as the article's figure 1 draws it.
        ancestry = []
        current: str | None = top
        while current is not None:
            if current in metas:
                raise ProtocolError(f"v1 image {top} at {api.endpoint}: parent links form a cycle")
            meta = await api.image_json(current)
            image = registry_image(meta.json, where=f"v1 image {current} at {api.endpoint}")
            if image.id != current:
                raise IntegrityError(f"v1 image {current} at {api.endpoint}: its JSON says id {image.id}")
            metas[current] = meta
            ancestry.append(current)
            current = image.parent
    return top, list(reversed(ancestry)), metas


def _finish_layer(store: BlobStore, tmp: Path, blob: Digest, size: int, image_id: str) -> tuple[Descriptor, Digest]:
    """Sniff, hash the uncompressed tar, and place the layer in ``store`` (decompressing bzip2/xz)."""
    with tmp.open("rb") as f:
        info = diff_id_of(f, what=f"v1 layer {image_id}")
    media_type = layer_media_type(info.compression)
    if media_type is not None:
        store.adopt(tmp, blob)
        return Descriptor(media_type, blob, size), info.diff_id
    plain = tmp.with_name(tmp.name + ".tar")
    try:
        with tmp.open("rb") as src, open_decompressed(src, what=f"v1 layer {image_id}") as tar, plain.open("wb") as out:
            shutil.copyfileobj(tar, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        store.adopt(plain, info.diff_id)
    finally:
        plain.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return Descriptor(mt.OCI_LAYER, info.diff_id, info.diff_size), info.diff_id


def _flush_and_sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


async def download_layer(
    api: V1Api, store: BlobStore, image_id: str, meta: V1ImageMeta, progress: Progress
) -> StoredLayer:
    """GET one layer into ``store``, verified against ``X-Docker-Size`` and the payload checksum when sent."""
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    # Private to this process (another pull may fetch the same image); the pid lets a later pull remove it when
    # this one was killed (``remove_orphans``).
    tmp = store.staging_dir / f"{_PARTIAL_PREFIX}{os.getpid()}-{image_id}.{secrets.token_hex(6)}.partial"
    blob = DigestVerifier()
    payload = payload_checksum(meta.json)
    key = f"v1:{image_id}"
    progress.start(key, f"layer {image_id[:12]}", meta.size)
    try:
        with tmp.open("wb") as out:

            def write(chunk: bytes, out: BinaryIO = out) -> None:
                out.write(chunk)
                blob.update(chunk)
                payload.update(chunk)

            where = api.endpoint
            resumable = False
            for attempt in range(_RESUMES + 1):
                try:
                    async with api.open_layer(image_id, start=blob.size) as response:
                        resumable = response.headers.get("Accept-Ranges", "").lower() == "bytes"
                        async for chunk in response.aiter_raw(_CHUNK):
                            await in_thread(write, chunk)
                            progress.advance(key, len(chunk))
                    break
                except httpx.TransportError as exc:
                    # The engine's resumable reader: after a broken body, GET the rest with a Range (5 times).
                    if not (resumable or blob.size == 0) or attempt == _RESUMES:
                        raise TransportError(
                            f"v1 layer {image_id} from {where}: connection lost after {blob.size} bytes ({exc})"
                        ) from None
                    progress.event(
                        "retry",
                        what=f"GET of v1 layer {image_id[:12]}",
                        reason=f"connection lost after {blob.size} bytes; resuming from there",
                        offset=blob.size,
                        attempt=attempt + 1,
                        of=_RESUMES + 1,
                    )
            await in_thread(_flush_and_sync, out)
        if meta.size is not None and meta.size != blob.size:
            raise IntegrityError(
                f"v1 layer {image_id} from {where}: size mismatch: X-Docker-Size {meta.size}, got {blob.size} bytes"
            )
        actual = "sha256:" + payload.hexdigest()
        if meta.payload_checksums and actual not in meta.payload_checksums:
            expected = ", ".join(sorted(meta.payload_checksums))
            raise IntegrityError(
                f"v1 layer {image_id} from {where}: payload checksum mismatch: registry says {expected}, got {actual}"
            )
        try:
            descriptor, diff_id = await in_thread(_finish_layer, store, tmp, blob.digest(), blob.size, image_id)
        except ImageFormatError as exc:
            # What the registry sent (and its checksum, when it had one) is no readable layer: bad content from
            # the registry, an integrity failure, not a problem with the user's input.
            raise IntegrityError(f"{exc} (from {where})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        progress.finish(key, status="failed")
        raise
    progress.finish(key)
    return StoredLayer(descriptor, diff_id, blob.size)


async def _pull_chain(
    api: V1Api, store: BlobStore, chain_ids: list[str], metas: dict[str, V1ImageMeta], progress: Progress, jobs: int
) -> tuple[list[V1Image], list[StoredLayer]]:
    images: dict[str, V1Image] = {}
    stored: dict[str, StoredLayer] = {}

    async def meta_of(image_id: str) -> V1ImageMeta:
        meta = metas.get(image_id)
        if meta is None:
            meta = await api.image_json(image_id)
            metas[image_id] = meta
        image = registry_image(meta.json, where=f"v1 image {image_id} at {api.endpoint}")
        if image.id != image_id:
            raise IntegrityError(f"v1 image {image_id} at {api.endpoint}: its JSON says id {image.id}")
        images[image_id] = image
        return meta

    if jobs <= 1:
        # docker <= 1.9: json then layer, one image after the other, root first.
        for image_id in chain_ids:
            meta = await meta_of(image_id)
            stored[image_id] = await download_layer(api, store, image_id, meta, progress)
    else:
        # docker >= 1.10: every JSON first (serially), then the layers concurrently.
        for image_id in chain_ids:
            await meta_of(image_id)

        async def one(image_id: str) -> None:
            stored[image_id] = await download_layer(api, store, image_id, metas[image_id], progress)

        await run_bounded(chain_ids, one, jobs)
    try:
        chain = order_chain(list(images.values()), chain_ids[-1])
    except ImageFormatError as exc:
        raise ProtocolError(str(exc)) from None
    if [image.id for image in chain] != chain_ids:
        raise ProtocolError(f"v1 image {chain_ids[-1]} at {api.endpoint}: ancestry disagrees with parent links")
    return list(chain), [stored[image_id] for image_id in chain_ids]


async def pull_v1(
    api: V1Api,
    ref: Reference,
    dest: Path,
    *,
    format: str = "oci",
    progress: Progress | None = None,
    jobs: int = 1,
) -> V1PullOutcome:
    """Pull ``ref`` over v1 into ``dest``: an OCI layout directory, or a docker-archive file (``format``).

    ``jobs`` 1 (the default) is the engine's faithful serial walk; more lets layers download concurrently once
    the chain is known. Nothing of a failed pull is left in a docker-archive ``dest``; an OCI layout keeps only
    complete, verified blobs.
    """
    if format not in ("oci", "docker-archive"):
        raise ImageFormatError(f"unknown output format {format!r}: expected oci or docker-archive")
    progress = progress or NullProgress()
    started = time.monotonic()
    top, chain_ids, metas = await fetch_chain(api, ref)
    progress.event("chain", protocol="v1", image=top, layers=len(chain_ids), serial=jobs <= 1)
    existed = dest.exists()
    created = format == "oci" and OciLayout.is_new(dest)
    try:
        return await _pull_into(
            api, ref, dest, top, chain_ids, metas, format=format, progress=progress, jobs=jobs, started=started
        )
    except BaseException as exc:
        # As a v2 pull: a layout this pull created is taken back when its failure is not the network's (or a
        # Ctrl-C), unless another pull has named an image in it meanwhile; an existing one keeps only complete,
        # verified blobs, and so does one kept for the run that resumes.
        if created and isinstance(exc, RegtoolError) and not isinstance(exc, TransportError):
            await shielded(in_thread(OciLayout(dest).take_back_new, existed))
        raise


def _write_image(
    layout: OciLayout, ref: Reference, dest: Path, format: str, chain: list[V1Image], layers: list[StoredLayer]
) -> tuple[bytes, Manifest]:
    """Synthesize the config and OCI manifest of a pulled chain and write the image out (blocking: a worker thread)."""
    config = config_from_v1([image.json for image in chain], [str(layer.diff_id) for layer in layers])
    config_digest = layout.blobs.put_bytes(None, config)
    raw = oci_manifest(Descriptor(mt.OCI_CONFIG, config_digest, len(config)), [layer.descriptor for layer in layers])
    layout.blobs.put_bytes(None, raw)
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    tag = ref.tag or "latest"
    if format == "oci":
        layout.add_manifest(manifest.descriptor(), tag, str(ref))
    else:
        repo_tag = f"{ref.repository_ref}:{tag}"
        docker_archive.write_docker_archive(layout, manifest, config, [repo_tag], dest, v1_chain=chain)
    return config, manifest


async def _pull_into(
    api: V1Api,
    ref: Reference,
    dest: Path,
    top: str,
    chain_ids: list[str],
    metas: dict[str, V1ImageMeta],
    *,
    format: str,
    progress: Progress,
    jobs: int,
    started: float,
) -> V1PullOutcome:
    with contextlib.ExitStack() as stack:
        root = dest
        if format != "oci":
            dest.parent.mkdir(parents=True, exist_ok=True)
            await in_thread(remove_orphans, dest.parent, _WORK_PREFIX)
            work = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=dest.parent)
                )
            )
            root = work / "layout"
        layout = await in_thread(functools.partial(OciLayout.open, root, create=True))
        await in_thread(remove_orphans, layout.blobs.staging_dir, _PARTIAL_PREFIX)
        try:
            chain, layers = await _pull_chain(api, layout.blobs, chain_ids, metas, progress, jobs)
            config, manifest = await in_thread(_write_image, layout, ref, dest, format, chain, layers)
        finally:
            # Leave only the layout's own files; the staging area goes once nothing is left in it.
            layout.blobs.tidy()
    return V1PullOutcome(
        image_id=top,
        chain=tuple(chain),
        manifest=manifest,
        config=config,
        layers_downloaded=len(layers),
        bytes_downloaded=sum(layer.received for layer in layers),
        seconds=time.monotonic() - started,
    )
