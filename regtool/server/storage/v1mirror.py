"""v1 images over v2: when a v1 tag is written, the image it names becomes a v2 manifest under the same name
and tag, so one registry shows one set of images whichever API pushed them.

The conversion is the one ``regtool pull --protocol v1`` makes on the client (``regtool.image.convert``): an
OCI config built from the v1 chain (``config_from_v1``) and an OCI manifest (``oci_manifest``) whose layers are
the v1 layer blobs as they are stored, by their sha256 digests. A bzip2 or xz layer, which no v2 media type
carries, is stored decompressed, as the client does. Both sides build the same bytes from the same input, so an
image has one digest whether it is pulled over v1 or v2, and writing its tag again gives that digest again.

Finding a layer's diff_id means reading the layer once; the result is kept beside the v1 image
(``v1/images/<id>/_v2layer``), so tagging the image again, in any repository, reads nothing. The manifest's
digest is kept too (``_v2manifest``): deleting the v1 tag removes the v2 tag only while it still names that
manifest (a v2 push since then keeps its tag).

A v1 repository whose name the v2 grammar does not accept (upper case, for one) stays v1-only; so does an
image whose layer does not decompress (logged, the v1 tag is written all the same). Storage faults (OSError)
propagate, as they do everywhere in the stores.
"""

from __future__ import annotations

import json
import logging
import time

from regtool import grammar
from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, InvalidDigest
from regtool.image.compression import open_decompressed
from regtool.image.convert import config_from_v1, diff_id_of, layer_media_type, oci_manifest
from regtool.manifest import Descriptor, ManifestError, parse_manifest
from regtool.server.errors import ApiError
from regtool.server.storage import paths
from regtool.server.storage.driver import PathNotFound
from regtool.server.storage.registry import Registry
from regtool.server.storage.v1images import V1Error, V1ImageStore, image_file

__all__ = ["expose_tag", "withdraw_tags"]

logger = logging.getLogger("regtool.server")

_CHUNK = 1 << 20
_LAYER = "_v2layer"
_MANIFEST = "_v2manifest"


def expose_tag(registry: Registry, store: V1ImageStore, name: str, tag: str, image_id: str) -> Digest | None:
    """Store v1 image ``image_id`` as a v2 manifest in repository ``name``, tagged ``tag``; return its digest.

    None when the image cannot be shown over v2 (a name or tag outside the v2 grammar, an incomplete chain, a
    layer that does not decompress).
    """
    if not grammar.is_valid_name(name) or not grammar.is_valid_tag(tag):
        return None
    try:
        chain = store.chain(image_id)
        layers = [_layer(registry, store, level, blob) for level, _, blob in chain]
        config = config_from_v1([raw for _, raw, _ in chain], [str(diff_id) for _, diff_id in layers])
    except V1Error:
        return None
    except ImageFormatError as exc:
        logger.warning("v1 image %s of %s:%s is not shown over v2: %s", image_id, name, tag, exc)
        return None
    config_digest = registry.blobs.put(config)
    descriptors = [descriptor for descriptor, _ in layers]
    raw = oci_manifest(Descriptor(mt.OCI_CONFIG, config_digest, len(config)), descriptors)
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    for digest in (config_digest, *(d.digest for d in descriptors)):
        registry.link_blob(name, digest)
    registry.put_manifest(name, manifest, tag)
    store.driver.put_content(image_file(image_id, _MANIFEST), str(manifest.digest).encode())
    return manifest.digest


def withdraw_tags(registry: Registry, store: V1ImageStore, name: str, tags: dict[str, str]) -> None:
    """After v1 tags were deleted (``{tag: image id}``): delete each v2 tag that still names its image's manifest."""
    if not grammar.is_valid_name(name):
        return
    for tag, image_id in tags.items():
        if not grammar.is_valid_tag(tag):
            continue
        try:
            shown = Digest.parse(store.driver.get_content(image_file(image_id, _MANIFEST)).decode())
            if registry.resolve(name, tag) == shown:
                registry.delete_tag(name, tag)
        except (PathNotFound, V1Error, ApiError, InvalidDigest, UnicodeDecodeError):
            continue


def _layer(registry: Registry, store: V1ImageStore, image_id: str, blob: Digest) -> tuple[Descriptor, Digest]:
    """The v2 descriptor of image ``image_id``'s layer (stored as ``blob``) and the layer's diff_id."""
    cache = image_file(image_id, _LAYER)
    try:
        data = json.loads(store.driver.get_content(cache))
        descriptor = Descriptor.from_json(data["descriptor"])
        diff_id = Digest.parse(data["diffId"])
        if registry.blobs.size(descriptor.digest) == descriptor.size:
            return descriptor, diff_id
    except (PathNotFound, ValueError, KeyError, TypeError, ManifestError, InvalidDigest):
        pass
    with registry.blobs.open(blob) as stream:
        info = diff_id_of(stream, what=f"v1 layer of image {image_id}")
    media_type = layer_media_type(info.compression)
    if media_type is not None:
        size = registry.blobs.size(blob)
        if size is None:
            raise V1Error(404, "Image not found")
        descriptor = Descriptor(media_type, blob, size)
    else:
        _store_decompressed(registry, blob, info.diff_id, image_id)
        descriptor = Descriptor(mt.OCI_LAYER, info.diff_id, info.diff_size)
    record = {"descriptor": descriptor.to_json(), "diffId": str(info.diff_id)}
    store.driver.put_content(cache, json.dumps(record).encode())
    return descriptor, info.diff_id


def _store_decompressed(registry: Registry, blob: Digest, diff_id: Digest, image_id: str) -> None:
    """Store the decompressed tar of layer ``blob`` as the blob ``diff_id`` (unless it is there already)."""
    if registry.blobs.size(diff_id) is not None:
        return
    path, writer = registry.blobs.temp_writer()
    try:
        # Started like an upload session (no repository: no client can reach it), so one a stopped server left
        # is found and purged by its age, on object storage too, where its bytes may be only multipart parts.
        started = json.dumps({"started": time.time()}).encode()
        registry.driver.put_content(paths.upload_info(path.split("/")[-2]), started)
        try:
            with registry.blobs.open(blob) as stream, open_decompressed(stream, what=f"v1 layer {image_id}") as tar:
                while chunk := tar.read(_CHUNK):
                    writer.write(chunk)
        except BaseException:
            writer.close()
            raise
        writer.commit()
        registry.blobs.ingest(path, diff_id)
    finally:
        registry.blobs.discard(path)
