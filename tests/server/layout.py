"""Build small OCI image layouts with the standard library (tarfile + gzip), for interop tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool import mediatypes as mt

__all__ = ["BuiltImage", "make_layer", "write_oci_layout"]


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped tar layer holding ``files``; returns the compressed bytes and the diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    compressed = gzip.compress(uncompressed, compresslevel=1, mtime=0)
    return compressed, "sha256:" + hashlib.sha256(uncompressed).hexdigest()


@dataclass(frozen=True)
class BuiltImage:
    manifest: bytes
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def blobs(self) -> dict[str, bytes]:
        return {_digest(b): b for b in (self.config, *self.layers)}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _image(layout: Path, arch: str, layer_count: int, layer_size: int) -> BuiltImage:
    layers, diff_ids = [], []
    for i in range(layer_count):
        compressed, diff_id = make_layer({f"{arch}/file{i}.bin": os.urandom(layer_size)})
        layers.append(compressed)
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"layer {i}"} for i in range(layer_count)],
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **_write_blob(layout, config)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, **_write_blob(layout, layer)} for layer in layers],
    }
    raw = json.dumps(manifest, indent=3).encode()
    _write_blob(layout, raw)
    return BuiltImage(raw, config, tuple(layers))


def write_oci_layout(
    layout: Path, tag: str, *, arches: tuple[str, ...] = ("amd64",), layer_count: int = 2, layer_size: int = 50_000
) -> tuple[bytes, list[BuiltImage]]:
    """Write an OCI layout whose ``tag`` is one image (one arch) or an index (several); return the top bytes."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    images = [_image(layout, arch, layer_count, layer_size) for arch in arches]
    if len(images) == 1:
        top, top_type = images[0].manifest, mt.OCI_MANIFEST
    else:
        index = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": _digest(image.manifest),
                    "size": len(image.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for arch, image in zip(arches, images, strict=True)
            ],
        }
        top, top_type = json.dumps(index).encode(), mt.OCI_INDEX
        _write_blob(layout, top)
    root_index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": top_type,
                "digest": _digest(top),
                "size": len(top),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(root_index))
    return top, images
