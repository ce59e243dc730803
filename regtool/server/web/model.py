"""What the pages show, read through the registry store (``storage/registry.py``) the API handlers use.

Blocking code: the views call these functions in a worker thread. Everything is bounded so that no repository
makes a page slow: tags are read a page at a time (only that page's links and manifests), summaries of manifests
are cached by repository and digest (content-addressed, so an entry never goes stale; a deleted manifest is
simply no longer reached through a tag), configs are read up to ``CONFIG_LIMIT`` bytes, and the referrers tree
stops at ``REFERRER_DEPTH`` levels and ``REFERRER_LIMIT`` nodes.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import InvalidDigest
from regtool.manifest import Descriptor, ImageConfig, Manifest, ManifestError, Platform, parse_manifest
from regtool.server.errors import ApiError
from regtool.server.storage.driver import PathNotFound
from regtool.server.storage.registry import Registry

__all__ = [
    "CONFIG_LIMIT",
    "PAGE_SIZE",
    "ImageView",
    "Page",
    "ReferrerGroup",
    "ReferrerNode",
    "RepositoryRow",
    "Summary",
    "SummaryCache",
    "TagRow",
    "artifact_kind",
    "image_view",
    "paginate",
    "repository_rows",
    "tag_rows",
]

PAGE_SIZE = 100
CONFIG_LIMIT = 1024 * 1024
REFERRER_DEPTH = 4
REFERRER_LIMIT = 200
_IMAGE_CONFIG_TYPES = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})


@dataclass(frozen=True, slots=True)
class Page:
    """Page ``number`` (1-based) of ``count`` pages over ``total`` entries."""

    number: int
    count: int
    total: int

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.count else None


def paginate(entries: Sequence[str], number: int, size: int = PAGE_SIZE) -> tuple[list[str], Page]:
    """The ``number``-th slice of ``size`` entries (clamped into range) and where it is."""
    count = max(1, -(-len(entries) // size))
    number = min(max(1, number), count)
    start = (number - 1) * size
    return list(entries[start : start + size]), Page(number, count, len(entries))


@dataclass(frozen=True, slots=True)
class Summary:
    """One manifest as a row shows it: media type, total size (manifest + config + layers, or an index with its
    children), platforms, and the artifact type when it is not a plain image."""

    digest: Digest
    media_type: str
    kind: str
    total_size: int
    platforms: tuple[str, ...] = ()
    artifact_type: str | None = None


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    tags: int


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: str
    digest: Digest
    pushed: float
    summary: Summary | None


class SummaryCache:
    """Summaries by (repository, digest), least recently used dropped past ``limit``; safe across threads."""

    def __init__(self, limit: int = 8192) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, Digest], Summary] = OrderedDict()

    def get(self, registry: Registry, name: str, digest: Digest) -> Summary | None:
        key = (name, digest)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        summary = summarize(registry, name, digest, self)
        if summary is not None:
            with self._lock:
                self._entries[key] = summary
                while len(self._entries) > self._limit:
                    self._entries.popitem(last=False)
        return summary


def _load(registry: Registry, name: str, digest: Digest) -> Manifest | None:
    try:
        stored = registry.get_manifest(name, str(digest))
        return parse_manifest(stored.raw, stored.media_type)
    except (ApiError, ManifestError, PathNotFound):
        return None


def _read_config(registry: Registry, name: str, descriptor: Descriptor | None) -> ImageConfig | None:
    """The image config ``descriptor`` names, when it is one, is in ``name`` and is small enough to show."""
    if descriptor is None or descriptor.media_type not in _IMAGE_CONFIG_TYPES:
        return None
    try:
        if registry.stat_blob(name, descriptor.digest) > CONFIG_LIMIT:
            return None
        with registry.open_blob(name, descriptor.digest) as blob:
            raw = blob.read(CONFIG_LIMIT + 1)
        return ImageConfig.parse(raw)
    except (ApiError, ManifestError, PathNotFound):
        return None


def _platform_text(platform: Platform | None) -> str | None:
    if platform is None or not platform.os or not platform.architecture:
        return None
    if platform.os == "unknown" and platform.architecture == "unknown":
        # buildx's attestation manifests sit in an index with this placeholder platform: not a platform to run.
        return None
    return str(platform)


def _config_platform(config: ImageConfig | None) -> str | None:
    if config is None or not config.os or not config.architecture:
        return None
    return _platform_text(Platform(config.architecture, config.os, config.variant))


def summarize(registry: Registry, name: str, digest: Digest, cache: SummaryCache | None = None) -> Summary | None:
    """The summary of manifest ``digest`` in ``name``; None when it is absent or unreadable."""
    manifest = _load(registry, name, digest)
    if manifest is None:
        return None
    if manifest.is_index:
        total = manifest.size
        platforms: list[str] = []
        for child in manifest.manifests:
            nested = (cache.get if cache else _uncached)(registry, name, child.digest) if not child.urls else None
            # A child stored elsewhere (or not at all) still counts for what its descriptor says.
            total += nested.total_size if nested is not None else child.size
            text = _platform_text(child.platform)
            if text is not None and text not in platforms:
                platforms.append(text)
        return Summary(digest, manifest.media_type, "index", total, tuple(platforms), manifest.artifact_type)
    total = manifest.size + sum(d.size for d in manifest.layers)
    if manifest.config is not None:
        total += manifest.config.size
    platform = _config_platform(_read_config(registry, name, manifest.config))
    artifact = manifest.effective_artifact_type()
    return Summary(
        digest,
        manifest.media_type,
        manifest.kind,
        total,
        (platform,) if platform else (),
        artifact if artifact not in _IMAGE_CONFIG_TYPES else None,
    )


def _uncached(registry: Registry, name: str, digest: Digest) -> Summary | None:
    return summarize(registry, name, digest)


def repository_rows(registry: Registry, names: Sequence[str]) -> list[RepositoryRow]:
    """``names`` with their tag counts (one directory listing each)."""
    rows = []
    for name in names:
        try:
            count = len(registry.tags(name))
        except ApiError:
            count = 0
        rows.append(RepositoryRow(name, count))
    return rows


def tag_rows(
    registry: Registry, name: str, cache: SummaryCache, *, query: str = "", number: int = 1
) -> tuple[list[TagRow], Page]:
    """One page of ``name``'s tags (those containing ``query``), each with its digest, push time and summary.

    NAME_UNKNOWN (``ApiError``) when the repository does not exist.
    """
    tags = registry.tags(name)
    if query:
        needle = query.lower()
        tags = [t for t in tags if needle in t.lower()]
    shown, page = paginate(tags, number)
    rows = []
    for tag in shown:
        target = registry.tag_target(name, tag)
        if target is not None:
            rows.append(TagRow(tag, target[0], target[1], cache.get(registry, name, target[0])))
    return rows, page


# -- one image --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferrerNode:
    digest: Digest
    media_type: str
    size: int
    artifact_type: str
    annotations: dict[str, str]
    groups: tuple[ReferrerGroup, ...] = ()


@dataclass(frozen=True, slots=True)
class ReferrerGroup:
    """Referrers of one artifact type: ``kind`` is signature, SBOM, attestation or artifact."""

    artifact_type: str
    kind: str
    nodes: tuple[ReferrerNode, ...]


@dataclass(frozen=True, slots=True)
class ChildRow:
    """One entry of an index: its platform (or none), digest, media type and size."""

    platform: str | None
    digest: Digest
    media_type: str
    size: int
    present: bool


@dataclass(frozen=True, slots=True)
class LayerRow:
    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ConfigView:
    """The run settings of an image config, as text: configs are pushed by anyone, so nothing is trusted to have
    the type the spec gives it."""

    settings: tuple[tuple[str, str], ...]
    ports: tuple[str, ...]
    env: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    created: str
    created_by: str
    empty_layer: bool


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def config_view(config: dict[str, Any]) -> ConfigView:
    settings = tuple(
        (key, json.dumps(config[key], ensure_ascii=False) if key in ("Entrypoint", "Cmd") else _text(config[key]))
        for key in ("Entrypoint", "Cmd", "WorkingDir", "User", "StopSignal")
        if config.get(key) not in (None, "", [])
    )
    ports = config.get("ExposedPorts")
    env = config.get("Env")
    labels = config.get("Labels")
    return ConfigView(
        settings,
        tuple(sorted(str(p) for p in ports)) if isinstance(ports, dict | list) else (),
        tuple(_text(e) for e in env) if isinstance(env, list) else (),
        tuple(sorted((str(k), _text(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
    )


def history_rows(history: Sequence[dict[str, Any]]) -> tuple[HistoryRow, ...]:
    return tuple(
        HistoryRow(
            _text(step.get("created", "")),
            _text(step.get("created_by") or step.get("comment") or ""),
            step.get("empty_layer") is True,
        )
        for step in history
    )


@dataclass(frozen=True)
class ImageView:
    """Everything the image page shows about one manifest of ``name``."""

    name: str
    digest: Digest
    media_type: str
    kind: str
    size: int
    total_size: int
    raw: str
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    config_descriptor: Descriptor | None = None
    config: ConfigView | None = None
    platform: str | None = None
    created: str | None = None
    history: tuple[HistoryRow, ...] = ()
    layers: tuple[LayerRow, ...] = ()
    children: tuple[ChildRow, ...] = ()
    referrers: tuple[ReferrerGroup, ...] = ()
    referrer_count: int = 0


def artifact_kind(artifact_type: str) -> str:
    """A person's word for an artifact type: signature, SBOM, attestation, or artifact."""
    text = artifact_type.lower()
    if "signature" in text or ".sig." in text or text.endswith(".sig"):
        return "signature"
    if any(word in text for word in ("spdx", "cyclonedx", "sbom", "syft")):
        return "SBOM"
    if any(word in text for word in ("in-toto", "intoto", "attestation", "dsse", "provenance", "slsa", "vex")):
        return "attestation"
    return "artifact"


def _referrer_groups(
    registry: Registry, name: str, subject: Digest, depth: int, seen: set[Digest]
) -> tuple[ReferrerGroup, ...]:
    """Referrers of ``subject`` by artifact type, each with its own referrers below it (bounded; cycle-safe)."""
    if depth >= REFERRER_DEPTH or len(seen) >= REFERRER_LIMIT:
        return ()
    grouped: dict[str, list[ReferrerNode]] = {}
    for entry in registry.referrers(name, subject):
        try:
            digest = Digest.parse(str(entry.get("digest", "")))
        except InvalidDigest:
            continue
        if digest in seen or len(seen) >= REFERRER_LIMIT:
            continue
        seen.add(digest)
        artifact_type = entry.get("artifactType")
        artifact_type = artifact_type if isinstance(artifact_type, str) and artifact_type else "(no artifact type)"
        annotations = entry.get("annotations")
        size = entry.get("size")
        node = ReferrerNode(
            digest,
            str(entry.get("mediaType", "")),
            size if isinstance(size, int) else 0,
            artifact_type,
            {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
            _referrer_groups(registry, name, digest, depth + 1, seen),
        )
        grouped.setdefault(artifact_type, []).append(node)
    return tuple(
        ReferrerGroup(kind_type, artifact_kind(kind_type), tuple(nodes)) for kind_type, nodes in sorted(grouped.items())
    )


def _count(groups: tuple[ReferrerGroup, ...]) -> int:
    return sum(len(g.nodes) + sum(_count(n.groups) for n in g.nodes) for g in groups)


def _pretty(raw: bytes) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


def image_view(registry: Registry, name: str, reference: str, cache: SummaryCache) -> ImageView:
    """The image page's content for ``reference`` (a tag or a digest) of ``name``; ApiError when not found."""
    stored = registry.get_manifest(name, reference)
    try:
        manifest = parse_manifest(stored.raw, stored.media_type)
    except ManifestError:
        return ImageView(name, stored.digest, stored.media_type, "unreadable", len(stored.raw), 0, _pretty(stored.raw))
    summary = cache.get(registry, name, stored.digest)
    referrers = _referrer_groups(registry, name, stored.digest, 0, {stored.digest})
    common: dict[str, Any] = {
        "name": name,
        "digest": stored.digest,
        "media_type": stored.media_type,
        "kind": manifest.kind,
        "size": manifest.size,
        "total_size": summary.total_size if summary else manifest.size,
        "raw": _pretty(stored.raw),
        "artifact_type": manifest.artifact_type,
        "annotations": dict(manifest.annotations),
        "subject": manifest.subject,
        "referrers": referrers,
        "referrer_count": _count(referrers),
    }
    if manifest.is_index:
        children = tuple(
            ChildRow(
                _platform_text(child.platform),
                child.digest,
                child.media_type,
                child.size,
                registry.blob_linked(name, child.digest),
            )
            for child in manifest.manifests
        )
        return ImageView(**common, children=children)
    config = _read_config(registry, name, manifest.config)
    layers = tuple(LayerRow(d.digest, d.media_type, d.size) for d in manifest.layers)
    return ImageView(
        **common,
        config_descriptor=manifest.config,
        config=config_view(config.config) if config else None,
        platform=_config_platform(config),
        created=config.created if config else None,
        history=history_rows(config.history) if config else (),
        layers=layers,
    )
