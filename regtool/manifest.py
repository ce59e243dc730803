"""Typed, validated views over manifests, indexes and image configs.

The raw bytes are always kept: a manifest's digest is the sha256 of its exact bytes, so nothing here
re-serialises a manifest that came from elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, InvalidDigest

__all__ = [
    "MAX_INDEX_DEPTH",
    "Descriptor",
    "ImageConfig",
    "Manifest",
    "ManifestError",
    "Platform",
    "index_tree",
    "parse_manifest",
]

# How deep indexes may nest (an index of indexes is legal OCI, e.g. for attestations); deeper is refused, so a
# hostile registry cannot make a walk go on and on.
MAX_INDEX_DEPTH = 8


class ManifestError(ValueError):
    """A manifest that is not valid JSON or not of the declared shape. Callers wrap it in their own error."""


@dataclass(frozen=True, slots=True)
class Platform:
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    @classmethod
    def from_json(cls, data: Any) -> Platform:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("architecture"), str)
            or not isinstance(data.get("os"), str)
        ):
            raise ManifestError("platform needs string 'architecture' and 'os'")
        features = data.get("os.features") or ()
        return cls(
            architecture=data["architecture"],
            os=data["os"],
            variant=data.get("variant") if isinstance(data.get("variant"), str) else None,
            os_version=data.get("os.version") if isinstance(data.get("os.version"), str) else None,
            os_features=tuple(str(f) for f in features) if isinstance(features, list) else (),
        )


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, data: Any, *, where: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"{where} is not an object")
        media_type = data.get("mediaType")
        digest_text = data.get("digest")
        size = data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{where} has no mediaType")
        if not isinstance(digest_text, str):
            raise ManifestError(f"{where} has no digest")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise ManifestError(f"{where}: {exc}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where} has no valid size")
        urls = data.get("urls") or ()
        annotations = data.get("annotations") or {}
        if not isinstance(urls, list | tuple) or not isinstance(annotations, dict):
            raise ManifestError(f"{where} has malformed urls or annotations")
        platform = Platform.from_json(data["platform"]) if data.get("platform") is not None else None
        artifact_type = data.get("artifactType")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(str(u) for u in urls),
            annotations={str(k): str(v) for k, v in annotations.items()},
            platform=platform,
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            p: dict[str, Any] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            if self.platform.os_version:
                p["os.version"] = self.platform.os_version
            if self.platform.os_features:
                p["os.features"] = list(self.platform.os_features)
            out["platform"] = p
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest of any kind; ``raw`` holds the exact bytes and ``digest`` their sha256.

    ``kind`` is ``"image"`` (schema2 / OCI manifest), ``"index"`` (OCI index / manifest list) or ``"schema1"``.
    """

    raw: bytes
    media_type: str
    kind: str
    digest: Digest
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    schema1_blobs: tuple[Digest, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.kind == "index"

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at this manifest."""
        return Descriptor(self.media_type, self.digest, len(self.raw), **extra)

    def referrer_descriptor(self) -> Descriptor:
        """This manifest as a referrers list names it: with its artifactType and its annotations."""
        return self.descriptor(artifact_type=self.effective_artifact_type(), annotations=dict(self.annotations))

    def referenced_blobs(self) -> tuple[Digest, ...]:
        """Blobs this manifest needs in the repository (config and layers; schema1 fsLayers)."""
        if self.kind == "schema1":
            return self.schema1_blobs
        blobs = [self.config.digest] if self.config is not None else []
        # Foreign layers (with urls) are allowed to live outside the registry.
        blobs.extend(layer.digest for layer in self.layers if not layer.urls)
        return tuple(blobs)

    def effective_artifact_type(self) -> str | None:
        """The referrers API's artifactType: the manifest's own, else its config's media type (images only)."""
        if self.artifact_type:
            return self.artifact_type
        if self.kind == "image" and self.config is not None:
            return self.config.media_type
        return None


async def index_tree(
    root: Manifest,
    fetch: Callable[[Sequence[Descriptor]], Awaitable[list[Manifest]]],
    *,
    where: str,
) -> list[Manifest]:
    """Every manifest below the index ``root``, each once, children before the index that lists them.

    ``fetch`` returns the manifests of a list of descriptors (in order). Nested indexes are followed, so a push or
    a pull of everything gets the whole tree, and the order is the one a registry accepts manifests in. Raises
    ImageFormatError when indexes nest deeper than MAX_INDEX_DEPTH.
    """
    ordered: list[Manifest] = []
    seen: set[Digest] = {root.digest}

    async def walk(index: Manifest, depth: int) -> None:
        if depth > MAX_INDEX_DEPTH:
            raise ImageFormatError(f"{where}: indexes nest more than {MAX_INDEX_DEPTH} deep")
        entries = [entry for entry in index.manifests if entry.digest not in seen]
        seen.update(entry.digest for entry in entries)
        for child in await fetch(entries):
            if child.is_index:
                await walk(child, depth + 1)
            ordered.append(child)

    await walk(root, 1)
    return ordered


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ManifestError("not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ManifestError("not a JSON object")
    return data


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Parse ``raw`` as the media type ``content_type`` (or the body's own ``mediaType``).

    Raises ManifestError when the JSON is malformed, the media type unknown, or the two media types disagree.
    """
    data = _json_object(raw)
    declared = data.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType is not a string")
    ctype = content_type.split(";")[0].strip() if content_type else None
    if ctype in {None, "", "application/json", "application/octet-stream"}:
        ctype = None
    media_type = ctype or declared or _guess_media_type(data)
    if declared and ctype and declared != ctype:
        raise ManifestError(f"body mediaType {declared!r} disagrees with Content-Type {ctype!r}")
    digest = Digest.of(raw)
    schema_version = data.get("schemaVersion")
    if media_type in mt.SCHEMA1_TYPES:
        if schema_version != 1:
            raise ManifestError("schema1 manifest must have schemaVersion 1")
        fs_layers = data.get("fsLayers")
        if not isinstance(fs_layers, list) or not fs_layers:
            raise ManifestError("schema1 manifest has no fsLayers")
        blobs = []
        for i, layer in enumerate(fs_layers):
            try:
                blobs.append(Digest.parse(layer["blobSum"]))
            except (TypeError, KeyError, InvalidDigest):
                raise ManifestError(f"fsLayers[{i}] has no valid blobSum") from None
        return Manifest(raw, media_type, "schema1", digest, schema1_blobs=tuple(dict.fromkeys(blobs)))
    if schema_version != 2:
        raise ManifestError(f"unsupported schemaVersion {schema_version!r}")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError("annotations is not an object")
    subject = Descriptor.from_json(data["subject"], where="subject") if data.get("subject") is not None else None
    artifact_type = data.get("artifactType") if isinstance(data.get("artifactType"), str) else None
    notes = {str(k): str(v) for k, v in annotations.items()}
    if media_type in mt.INDEX_TYPES:
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError("index has no manifests list")
        children = tuple(Descriptor.from_json(m, where=f"manifests[{i}]") for i, m in enumerate(entries))
        return Manifest(
            raw,
            media_type,
            "index",
            digest,
            manifests=children,
            subject=subject,
            artifact_type=artifact_type,
            annotations=notes,
        )
    if media_type in mt.IMAGE_MANIFEST_TYPES:
        if "config" not in data:
            raise ManifestError("image manifest has no config")
        config = Descriptor.from_json(data["config"], where="config")
        layers_data = data.get("layers")
        if not isinstance(layers_data, list):
            raise ManifestError("image manifest has no layers list")
        layers = tuple(Descriptor.from_json(layer, where=f"layers[{i}]") for i, layer in enumerate(layers_data))
        return Manifest(
            raw,
            media_type,
            "image",
            digest,
            config=config,
            layers=layers,
            subject=subject,
            artifact_type=artifact_type,
            annotations=notes,
        )
    raise ManifestError(f"unknown manifest media type {media_type!r}")


def _guess_media_type(data: dict[str, Any]) -> str:
    # An OCI manifest may omit mediaType; its shape says what it is.
    if data.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in data else mt.DOCKER_SCHEMA1
    if "manifests" in data:
        return mt.OCI_INDEX
    if "config" in data:
        return mt.OCI_MANIFEST
    raise ManifestError("cannot tell the manifest's media type: no mediaType and no config or manifests")


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config regtool reads; ``raw`` is kept byte-exact."""

    raw: bytes
    architecture: str | None
    os: str | None
    variant: str | None
    diff_ids: tuple[str, ...]
    config: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    created: str | None

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        data = _json_object(raw)
        rootfs = data.get("rootfs") or {}
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        history = data.get("history") or []
        inner = data.get("config") or {}

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(
            raw=raw,
            architecture=text("architecture"),
            os=text("os"),
            variant=text("variant"),
            diff_ids=tuple(str(d) for d in diff_ids) if isinstance(diff_ids, list) else (),
            config=inner if isinstance(inner, dict) else {},
            history=tuple(h for h in history if isinstance(h, dict)) if isinstance(history, list) else (),
            created=text("created"),
        )
