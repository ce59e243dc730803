"""Registry v1 image chains <-> OCI image configs (protocols.md §1.3, §6.2).

A v1 image is a chain of image JSON documents linked by ``parent``, one layer each. An OCI image is one config
(``rootfs.diff_ids`` + ``history``) and a list of layers. This module converts between the two:

- :func:`config_from_v1` builds an OCI config from a v1 chain the way the docker engine did
  (``image/v1 MakeConfigFromV1Config``): the top image's JSON without its v1 keys, ``rootfs.diff_ids``, and one
  ``history`` entry per ancestor.
- :func:`v1_chain_from_config` derives a v1 chain (ids, parents and JSON bytes) from an OCI config, with ids that
  depend only on the config and the layers (as docker >= 1.10 ``CreateID`` did), so pushing the same image twice
  gives the same ids and the registry skips what it has.
- :func:`diff_id_of` hashes a layer's uncompressed tar, whatever its compression (sniffed, not assumed).

>>> chain = v1_chain_from_config(config_bytes)            # doctest: +SKIP
>>> config_from_v1([img.json for img in chain], diff_ids)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from regtool import mediatypes as mt
from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError
from regtool.image.compression import Compression, open_decompressed, peek, sniff
from regtool.manifest import Descriptor
from regtool.protocol.v1 import IMAGE_ID_RE

__all__ = [
    "V1_ONLY_KEYS",
    "LayerInfo",
    "V1Image",
    "chain_ids",
    "config_from_v1",
    "diff_id_of",
    "layer_media_type",
    "oci_manifest",
    "order_chain",
    "parse_v1_json",
    "payload_checksum",
    "v1_chain_from_config",
]

# Keys of a v1 image JSON that describe the chain, not the image (moby image/v1 MakeConfigFromV1Config).
V1_ONLY_KEYS = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")
# Old v1 images say "x86_64"; OCI configs use GOARCH names.
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386", "armv7l": "arm"}
_CHUNK = 1 << 20
# The OCI layer media type for each compression a v2 registry can carry as is; bzip2 and xz have none.
_LAYER_TYPES = {
    Compression.NONE: mt.OCI_LAYER,
    Compression.GZIP: mt.OCI_LAYER_GZIP,
    Compression.ZSTD: mt.OCI_LAYER_ZSTD,
}


@dataclass(frozen=True, slots=True)
class V1Image:
    """One level of a v1 chain: its id, its parent's id (None at the root) and the exact JSON bytes."""

    id: str
    parent: str | None
    json: bytes


def parse_v1_json(raw: bytes, *, where: str = "v1 image JSON") -> V1Image:
    """Validate a v1 image JSON (an object with a valid ``id`` and optional ``parent``) and keep its bytes."""
    data = _load_object(raw, where)
    image_id = data.get("id")
    if not isinstance(image_id, str) or not IMAGE_ID_RE.match(image_id):
        raise ImageFormatError(f"{where}: missing or invalid 'id'")
    parent = data.get("parent")
    if parent in (None, ""):
        parent = None
    elif not isinstance(parent, str) or not IMAGE_ID_RE.match(parent):
        raise ImageFormatError(f"{where}: invalid 'parent' of image {image_id}")
    return V1Image(image_id, parent, raw)


def order_chain(images: Sequence[V1Image], top: str) -> tuple[V1Image, ...]:
    """The chain ending at ``top``, root first, following ``parent``; error on a missing link or a cycle."""
    by_id = {image.id: image for image in images}
    chain: list[V1Image] = []
    current: str | None = top
    while current is not None:
        image = by_id.get(current)
        if image is None:
            raise ImageFormatError(f"v1 chain of {top}: image {current} is missing")
        if len(chain) > len(by_id):
            raise ImageFormatError(f"v1 chain of {top}: parent links form a cycle")
        chain.append(image)
        current = image.parent
    chain.reverse()
    return tuple(chain)


def payload_checksum(json_bytes: bytes, layer_chunks: Sequence[bytes] = ()) -> hashlib._Hash:
    """A sha256 primed with ``json + "\\n"``; feed the layer bytes to get the v1 payload checksum.

    The v1 payload checksum is ``sha256(json_bytes + b"\\n" + layer_bytes)`` over the exact bytes sent
    (docker-registry ``lib/checksums.py compute_simple``); it is the only checksum a v1 registry verifies.
    """
    hasher = hashlib.sha256(json_bytes)
    hasher.update(b"\n")
    for chunk in layer_chunks:
        hasher.update(chunk)
    return hasher


def _load_object(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ImageFormatError(f"{where}: not valid JSON") from None
    if not isinstance(data, dict):
        raise ImageFormatError(f"{where}: not a JSON object")
    return data


def _canonical(data: Any) -> bytes:
    # Go's encoding/json sorts map keys and adds no spaces; configs written that way stay stable across tools.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _history_entry(image: dict[str, Any]) -> dict[str, Any]:
    """``HistoryFromConfig``: created, author, created_by (container_config.Cmd joined by spaces), comment."""
    entry: dict[str, Any] = {}
    if isinstance(image.get("created"), str):
        entry["created"] = image["created"]
    if isinstance(image.get("author"), str) and image["author"]:
        entry["author"] = image["author"]
    container_config = image.get("container_config")
    cmd = container_config.get("Cmd") if isinstance(container_config, dict) else None
    if isinstance(cmd, list) and cmd:
        entry["created_by"] = " ".join(str(part) for part in cmd)
    if isinstance(image.get("comment"), str) and image["comment"]:
        entry["comment"] = image["comment"]
    return entry


def config_from_v1(chain: Sequence[bytes], diff_ids: Sequence[str]) -> bytes:
    """An OCI image config for the v1 chain ``chain`` (image JSON bytes, root first) and its layers' diff_ids.

    The top image's JSON minus the v1-only keys, with ``rootfs`` and one ``history`` entry per level. The
    architecture is normalised to its GOARCH name (old images say ``x86_64``) and ``os`` defaults to linux.
    """
    if not chain:
        raise ImageFormatError("v1 chain is empty")
    if len(chain) != len(diff_ids):
        raise ImageFormatError(f"v1 chain has {len(chain)} images but {len(diff_ids)} diff_ids")
    images = [_load_object(raw, f"v1 image JSON #{i}") for i, raw in enumerate(chain)]
    config = dict(images[-1])
    for key in V1_ONLY_KEYS:
        config.pop(key, None)
    arch = config.get("architecture")
    if not isinstance(arch, str) or not arch:
        config["architecture"] = "amd64"
    else:
        config["architecture"] = _ARCH_ALIASES.get(arch, arch)
    if not isinstance(config.get("os"), str) or not config["os"]:
        config["os"] = "linux"
    config["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    config["history"] = [_history_entry(image) for image in images]
    return _canonical(config)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI ChainIDs: ``chain[0] = diff_id[0]``, ``chain[n] = sha256(chain[n-1] + " " + diff_id[n])``."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _layer_histories(history: list[Any], count: int) -> list[dict[str, Any]]:
    """The history entries that belong to layers (not ``empty_layer``), padded with ``{}`` to ``count``."""
    entries = [h for h in history if isinstance(h, dict) and not h.get("empty_layer")]
    entries = entries[:count]
    entries.extend({} for _ in range(count - len(entries)))
    return entries


def v1_chain_from_config(config_raw: bytes) -> tuple[V1Image, ...]:
    """A v1 chain (root first) for an OCI/Docker image config; one v1 image per entry of ``rootfs.diff_ids``.

    Lower levels carry ``created``, ``author``, ``comment``, ``container_config.Cmd`` (from their history entry),
    ``architecture`` and ``os``; the top level carries the whole config minus ``rootfs`` and ``history``. Each id
    is the sha256 of the level's canonical JSON without ``id`` but with ``parent`` and ``layer_id`` (the layer's
    ChainID), like docker >= 1.10 ``image/v1 CreateID``: deterministic and unique per content and position.
    """
    config = _load_object(config_raw, "image config")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not diff_ids or not all(isinstance(d, str) for d in diff_ids):
        raise ImageFormatError("image config has no rootfs.diff_ids: a v1 image needs at least one layer")
    history = config.get("history")
    histories = _layer_histories(history if isinstance(history, list) else [], len(diff_ids))
    chains = chain_ids(diff_ids)
    top_fields = {k: v for k, v in config.items() if k not in ("rootfs", "history", *V1_ONLY_KEYS)}
    images: list[V1Image] = []
    parent: str | None = None
    for index, (entry, chain_id) in enumerate(zip(histories, chains, strict=True)):
        if index == len(diff_ids) - 1:
            body: dict[str, Any] = dict(top_fields)
            if "created" in entry and "created" not in body:
                body["created"] = entry["created"]
            if isinstance(entry.get("created_by"), str) and "container_config" not in body:
                body["container_config"] = {"Cmd": [entry["created_by"]]}
        else:
            body = {key: entry[key] for key in ("created", "author", "comment") if key in entry}
            if isinstance(entry.get("created_by"), str):
                body["container_config"] = {"Cmd": [entry["created_by"]]}
            for key in ("architecture", "os"):
                if key in config:
                    body[key] = config[key]
        if parent is not None:
            body["parent"] = parent
        image_id = hashlib.sha256(_canonical({**body, "layer_id": chain_id})).hexdigest()
        raw = _canonical({"id": image_id, **body})
        images.append(V1Image(image_id, parent, raw))
        parent = image_id
    return tuple(images)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """A layer blob's compression (sniffed) and its uncompressed tar's digest (the diff_id) and size."""

    compression: Compression
    diff_id: Digest
    diff_size: int


def diff_id_of(stream: BinaryIO, *, what: str = "layer") -> LayerInfo:
    """Sniff ``stream``'s compression and hash its decompressed bytes: the diff_id of a layer blob."""
    head, reader = peek(stream, 8)
    kind = sniff(head)
    verifier = DigestVerifier()
    try:
        with open_decompressed(reader, what=what) as tar:
            while chunk := tar.read(_CHUNK):
                verifier.update(chunk)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise ImageFormatError(f"{what}: cannot decompress {kind.value} data: {exc}") from None
    return LayerInfo(kind, verifier.digest(), verifier.size)


def layer_media_type(compression: Compression) -> str | None:
    """The OCI layer media type for a blob of this compression; None for bzip2/xz (recompress them first)."""
    return _LAYER_TYPES.get(compression)


def oci_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    """The bytes of an OCI image manifest for ``config`` and ``layers`` (canonical JSON)."""
    data = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return _canonical(data)
