"""``inspect`` (what a reference points at, down to the selected image's config) and ``delete``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from regtool import mediatypes as mt
from regtool.client.net.transport import redact_url
from regtool.client.tasks import run_bounded
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.resolve import resolve_image
from regtool.digest import Digest
from regtool.errors import IntegrityError, InvalidDigest, ProtocolError, RegistryError, UnsupportedProtocolError
from regtool.manifest import ImageConfig, Manifest, ManifestError, Platform
from regtool.protocol import v2
from regtool.reference import Reference

if TYPE_CHECKING:
    from regtool.client.results import InspectResult

__all__ = ["delete_manifest", "inspect_image", "resolve_digest"]

_CONFIG_LIMIT = 16 << 20
# HEADs at once for a schema1 image's layer sizes.
_SCHEMA1_HEADS = 8


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


async def _config(api: RegistryAPI, ref: Reference, manifest: Manifest) -> ImageConfig | None:
    if manifest.config is None:
        return None
    desc = manifest.config
    if desc.size > _CONFIG_LIMIT:
        raise ProtocolError(f"config {desc.digest} of {ref} is larger than {_CONFIG_LIMIT} bytes")
    url = await api.url(ref.registry, v2.blob_path(ref.repository, str(desc.digest)))
    response = await api.send("GET", url, what=f"config {desc.digest} of {ref}")
    raw = response.content
    actual = Digest.of(raw, desc.digest.algorithm)
    if actual != desc.digest or len(raw) != desc.size:
        raise IntegrityError(
            f"config {desc.digest}: content hashes to {actual} ({len(raw)} bytes) at {redact_url(url)}"
        )
    try:
        return ImageConfig.parse(raw)
    except ManifestError:
        return None


async def inspect_image(api: RegistryAPI, ref: Reference, *, platform: Platform | None = None) -> InspectResult:
    """Describe ``ref``; for an index, the entry for ``platform`` (default: the host's) is described too.

    A ``platform`` the index has no entry for is a NotFoundError listing the available ones, as in a pull; without
    ``platform``, an index lacking the host's platform is described alone.
    """
    # Here: sync and delete use this module's digest lookups and return no inspect result.
    from regtool.client.results import InspectResult, LayerInfo

    # The resolution a pull makes, so a platform the index lacks fails alike, listing the others; without
    # ``platform``, an index lacking this machine's platform (or whose entry is no image) is described alone.
    resolved = await resolve_image(api, ref, platform, purpose="inspect", optional=platform is None, schema1=True)
    top, image = resolved.top, resolved.image
    if top.kind == "schema1":
        return await _describe_schema1(api, ref, top)
    config = await _config(api, ref, image) if image is not None else None
    inner = config.config if config is not None else {}
    labels = inner.get("Labels") if isinstance(inner.get("Labels"), dict) else {}
    return InspectResult(
        reference=str(ref),
        digest=top.digest,
        media_type=top.media_type,
        platforms=resolved.platforms,
        platform=resolved.platform,
        manifest_digest=image.digest if image is not None else None,
        config_digest=image.config.digest if image is not None and image.config is not None else None,
        layers=tuple(LayerInfo(d.digest, d.size, d.media_type) for d in image.layers) if image is not None else (),
        os=config.os if config else None,
        architecture=config.architecture if config else None,
        variant=config.variant if config else None,
        created=config.created if config else None,
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=_strings(inner.get("Env")) or (),
        labels={str(k): str(v) for k, v in (labels or {}).items()},
    )


async def _describe_schema1(api: RegistryAPI, ref: Reference, manifest: Manifest) -> InspectResult:
    """A schema1 image as skopeo describes one: its config is the newest history entry's ``v1Compatibility``,
    its layers the ``fsLayers`` oldest first (without the empty ones ``throwaway`` marks), their sizes from a
    HEAD each (schema1 states none). The digest is the registry's: a signed manifest's is its payload's."""
    from regtool.client.results import InspectResult, LayerInfo

    try:
        data = json.loads(manifest.raw)
        history = [json.loads(entry["v1Compatibility"]) for entry in data.get("history") or []]
        fs_layers = [Digest.parse(layer["blobSum"]) for layer in data["fsLayers"]]
    except (ValueError, TypeError, KeyError, InvalidDigest) as exc:
        raise ProtocolError(f"{ref}: schema1 manifest: unreadable history or fsLayers ({exc})") from None
    newest: dict[str, Any] = history[0] if history and isinstance(history[0], dict) else {}
    layers = [
        digest
        for i, digest in enumerate(fs_layers)
        if not (i < len(history) and isinstance(history[i], dict) and history[i].get("throwaway"))
    ][::-1]
    sizes: dict[Digest, int] = {}

    async def size(digest: Digest) -> None:
        found = await api.blob_size(ref.registry, ref.repository, digest)
        sizes[digest] = -1 if found is None else found

    await run_bounded(list(dict.fromkeys(layers)), size, _SCHEMA1_HEADS)
    inner: dict[str, Any] = newest["config"] if isinstance(newest.get("config"), dict) else {}
    labels = inner["Labels"] if isinstance(inner.get("Labels"), dict) else {}
    return InspectResult(
        reference=str(ref),
        digest=await resolve_digest(api, ref),
        media_type=manifest.media_type,
        manifest_digest=None,
        os=_string(newest.get("os")),
        architecture=_string(newest.get("architecture")) or _string(data.get("architecture")),
        variant=_string(newest.get("variant")),
        created=_string(newest.get("created")),
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=_strings(inner.get("Env")) or (),
        labels={str(k): str(v) for k, v in (labels or {}).items()},
        layers=tuple(LayerInfo(digest, sizes[digest], mt.DOCKER_LAYER) for digest in layers),
    )


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


async def resolve_digest(api: RegistryAPI, ref: Reference) -> Digest:
    """The digest ``ref`` points at: its own digest, else the registry's answer for the tag (HEAD, then GET)."""
    if ref.digest is not None:
        return ref.digest
    response = await api.head_manifest(ref)
    header = response.headers.get(v2.CONTENT_DIGEST_HEADER)
    if header and Digest.is_valid(header):
        return Digest.parse(header)
    return (await api.get_manifest(ref)).digest


async def delete_manifest(api: RegistryAPI, ref: Reference) -> Digest:
    """Delete the manifest ``ref`` names (a tag is resolved to its digest first); returns that digest.

    A referrer (a manifest with a ``subject``) deleted where the registry has no referrers API also leaves its
    subject's tag-schema index, as the spec asks of the client that deletes it.
    """
    from regtool.client.v2.referrers import has_referrers_api, remove_from_tag_schema

    digest, subject = await _digest_and_subject(api, ref)
    url = await api.url(ref.registry, v2.manifest_path(ref.repository, str(digest)))
    try:
        await api.send("DELETE", url, what=f"delete of {ref.repository_ref}@{digest}", expect=(200, 202, 204))
    except RegistryError as exc:
        if exc.status in {400, 405} and (not exc.codes or "UNSUPPORTED" in exc.codes):
            raise UnsupportedProtocolError(
                f"{ref.registry} does not allow deleting manifests (HTTP {exc.status}"
                f"{', UNSUPPORTED' if 'UNSUPPORTED' in exc.codes else ''}); enable deletes in its configuration"
            ) from None
        raise
    if subject is not None and not await has_referrers_api(api, ref, subject):
        await remove_from_tag_schema(api, ref, subject, digest)
    return digest


async def _digest_and_subject(api: RegistryAPI, ref: Reference) -> tuple[Digest, Digest | None]:
    """The digest ``ref`` names and its manifest's subject, from one GET (where a tag was resolved by a HEAD
    before: the same one request). A manifest whose digest is not its bytes' (signed schema1) is resolved by the
    registry's answer instead, and has no subject."""
    try:
        manifest = await api.get_manifest(ref)
    except (IntegrityError, ProtocolError):
        return await resolve_digest(api, ref), None
    return ref.digest or manifest.digest, manifest.subject.digest if manifest.subject is not None else None
