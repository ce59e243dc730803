"""Small images built in Python for the image-format tests: layer tars, configs, manifests in a layout."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Manifest, parse_manifest


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding ``files`` (deterministic: mtime 0, root owner)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def xz_bytes(data: bytes) -> bytes:
    return lzma.compress(data)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BuiltImage:
    manifest: Manifest
    config: bytes
    layers: tuple[bytes, ...]  # the blobs as stored (compressed or not)
    tars: tuple[bytes, ...]  # the uncompressed tars


def make_image(
    n_layers: int = 2,
    *,
    compress: str = "gzip",
    seed: str = "x",
    media_type: str = mt.OCI_MANIFEST,
    architecture: str = "amd64",
) -> BuiltImage:
    """An image of ``n_layers`` small layers (``compress``: gzip, xz or none) with a matching config."""
    tars = tuple(layer_tar({f"file{i}.txt": f"{seed} layer {i}\n".encode() * (i + 1)}) for i in range(n_layers))
    if compress == "gzip":
        blobs = tuple(gzip_bytes(t) for t in tars)
        layer_type = mt.OCI_LAYER_GZIP if media_type == mt.OCI_MANIFEST else mt.DOCKER_LAYER
    elif compress == "xz":
        blobs = tuple(xz_bytes(t) for t in tars)
        layer_type = mt.OCI_LAYER
    else:
        blobs = tars
        layer_type = mt.OCI_LAYER
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
            "history": [{"created_by": f"step {i}"} for i in range(n_layers)],
        },
        sort_keys=True,
    ).encode()
    config_type = mt.OCI_CONFIG if media_type == mt.OCI_MANIFEST else mt.DOCKER_CONFIG
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "size": len(config), "digest": sha256(config)},
        "layers": [{"mediaType": layer_type, "size": len(b), "digest": sha256(b)} for b in blobs],
    }
    raw = json.dumps(doc, indent=2).encode()
    return BuiltImage(parse_manifest(raw), config, blobs, tars)


def store_image(layout: OciLayout, image: BuiltImage, ref_name: str | None = "latest") -> None:
    """Put every blob of ``image`` into ``layout`` and tag it."""
    for blob in (*image.layers, image.config, image.manifest.raw):
        layout.blobs.put_bytes(Digest.of(blob), blob)
    layout.add_manifest(image.manifest.descriptor(), ref_name=ref_name, image_name=f"example.com/test:{ref_name}")


def make_layout(path: Path, image: BuiltImage | None = None, ref_name: str | None = "latest") -> OciLayout:
    layout = OciLayout.open(path, create=True)
    store_image(layout, image or make_image(), ref_name)
    return layout
