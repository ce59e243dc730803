"""``tags``, ``catalog``, ``inspect`` and ``delete`` over the registry v1 API (``Client`` picks v1 or v2).

v1 has no manifests and no digests: an image is a chain of image JSONs with random (or, since docker 1.10,
content-derived) 64-hex ids. So over v1:

- ``tags``: ``GET /v1/repositories/<repo>/tags`` (``{tag: image id}``), the names sorted;
- ``catalog``: ``GET /v1/search?q=`` (every repository the registry finds for an empty query);
- ``inspect``: the tag's image and its chain (``/ancestry``, or the ``parent`` walk), each image's JSON and
  ``X-Docker-Size``; ``digest`` is the top image's id as ``sha256:<id>`` and each layer is one image of the
  chain, root first, named the same way (its compression is unknown without downloading it). Nothing is
  downloaded but the JSONs; ``--raw`` is the top image's JSON as served;
- ``delete``: ``DELETE /v1/repositories/<repo>/tags/<tag>``, returning the id the tag named. By digest there is
  nothing to delete over v1 (UnsupportedProtocolError).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ProtocolError, UnsupportedProtocolError
from regtool.manifest import ImageConfig, ManifestError
from regtool.reference import Reference

if TYPE_CHECKING:  # a v1 session is opened (and its module imported) only when v1 is used
    from regtool.client.results import InspectResult
    from regtool.client.v1.api import V1Api, V1ImageMeta

__all__ = ["V1_LAYER_MEDIA_TYPE", "v1_catalog", "v1_delete", "v1_image_json", "v1_inspect", "v1_tags"]

# What a v1 registry serves a layer as; whether it is gzip, xz or a plain tar shows only in its bytes.
V1_LAYER_MEDIA_TYPE = "application/octet-stream"


def _id_digest(image_id: str) -> Digest:
    return Digest("sha256", image_id)


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


async def v1_tags(api: V1Api, repository: Reference) -> list[str]:
    """The tags of ``repository``, sorted."""
    return sorted(await api.tags(repository.repository))


async def v1_catalog(api: V1Api) -> list[str]:
    """Every repository the registry's search lists, sorted."""
    return sorted(set(await api.search("")))


async def _top(api: V1Api, ref: Reference) -> tuple[str, list[str], dict[str, V1ImageMeta]]:
    if ref.digest is not None:
        raise UnsupportedProtocolError(f"{ref}: registry v1 has no digests; name the image by tag")
    # Here, not at the top: the client imports this module for every listing, and the pull module brings the
    # image formats (docker-archive, compression) that only a v1 walk needs.
    from regtool.client.v1.pull import fetch_chain

    return await fetch_chain(api, ref)


async def v1_image_json(api: V1Api, ref: Reference) -> bytes:
    """The JSON of the image ``ref``'s tag names, exactly as served."""
    top, _, metas = await _top(api, ref)
    meta = metas.get(top) or await api.image_json(top)
    return meta.json


async def v1_inspect(api: V1Api, ref: Reference) -> InspectResult:
    """Describe the image ``ref``'s tag names from the image JSONs of its chain (no layer is downloaded)."""
    # Here: ``tags`` and ``catalog`` import this module for their v1 side, and need no inspect result.
    from regtool.client.results import InspectResult, LayerInfo

    top, chain, metas = await _top(api, ref)
    for image_id in chain:
        if image_id not in metas:
            metas[image_id] = await api.image_json(image_id)
    try:
        config = ImageConfig.parse(metas[top].json)
    except ManifestError as exc:
        raise ProtocolError(f"v1 image {top} of {ref}: {exc}", status=200) from None
    inner = config.config
    labels = inner.get("Labels")
    return InspectResult(
        reference=str(ref),
        digest=_id_digest(top),
        media_type=mt.DOCKER_CONFIG,
        layers=tuple(
            LayerInfo(_id_digest(image_id), metas[image_id].size or 0, V1_LAYER_MEDIA_TYPE) for image_id in chain
        ),
        os=config.os,
        architecture=config.architecture,
        variant=config.variant,
        created=config.created,
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=_strings(inner.get("Env")) or (),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )


async def v1_delete(api: V1Api, ref: Reference) -> Digest:
    """Delete ``ref``'s tag; returns the id of the image it named, as ``sha256:<id>``."""
    if ref.digest is not None:
        raise UnsupportedProtocolError(f"{ref}: registry v1 deletes tags, not digests; name the tag")
    tag = ref.tag or "latest"
    await api.repository_images(ref.repository)
    image_id = await api.tag(ref.repository, tag)
    await api.delete_tag(ref.repository, tag)
    return _id_digest(image_id)
