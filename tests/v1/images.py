"""Small image builders for the v1 tests: layer tars made with tarfile, compressed as asked, and OCI layouts."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
from pathlib import Path

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Descriptor

__all__ = ["build_layout", "compress", "layer_tar", "push_v2_raw"]


def layer_tar(index: int, size: int = 1024, *, seed: int = 0) -> bytes:
    """An uncompressed tar with one file of ``size`` pseudo-random bytes, distinct per (index, seed)."""
    data = bytes((i * 31 + index * 7 + seed * 13 + (i >> 8)) % 251 for i in range(size))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer{index}/file.bin")
        info.size = len(data)
        info.mtime = 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(tar: bytes, kind: str) -> bytes:
    """``tar`` as plain, gzip, xz or bzip2 bytes."""
    if kind == "plain":
        return tar
    if kind == "gzip":
        return gzip.compress(tar, mtime=0)
    if kind == "xz":
        return lzma.compress(tar)
    if kind == "bzip2":
        return bz2.compress(tar)
    raise ValueError(kind)


def build_layout(
    path: Path, layers: int = 3, *, size: int = 1024, tag: str = "latest", seed: int = 0, kind: str = "gzip"
) -> tuple[OciLayout, Descriptor, list[bytes], bytes]:
    """An OCI layout with ``layers`` layers; returns (layout, manifest descriptor, layer blobs, config bytes)."""
    layout = OciLayout.open(path, create=True)
    blobs: list[bytes] = []
    diff_ids: list[str] = []
    history = []
    descriptors = []
    for i in range(layers):
        tar = layer_tar(i, size, seed=seed)
        blob = compress(tar, kind)
        blobs.append(blob)
        diff_ids.append(str(Digest.of(tar)))
        digest = layout.blobs.put_bytes(None, blob)
        media = mt.OCI_LAYER_GZIP if kind == "gzip" else mt.OCI_LAYER
        descriptors.append({"mediaType": media, "digest": str(digest), "size": len(blob)})
        history.append({"created": f"2024-01-0{i % 9 + 1}T00:00:00Z", "created_by": f"/bin/sh -c step {i}"})
        if i == 0:
            history.append({"created": "2024-01-01T00:00:01Z", "created_by": "ENV A=1", "empty_layer": True})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-02-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["A=1", f"SEED={seed}"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        },
        sort_keys=True,
    ).encode()
    config_digest = layout.blobs.put_bytes(None, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
            "layers": descriptors,
        }
    ).encode()
    manifest_digest = layout.blobs.put_bytes(None, manifest)
    descriptor = Descriptor(mt.OCI_MANIFEST, manifest_digest, len(manifest))
    layout.add_manifest(descriptor, tag)
    return layout, descriptor, blobs, config


def push_v2_raw(base_url: str, layout: OciLayout, descriptor: Descriptor, name: str, tag: str) -> None:
    """Push an image of ``layout`` over v2 with plain httpx (monolithic POST + PUT), independent of the client."""
    import httpx

    manifest = layout.manifest(descriptor)
    assert manifest.config is not None
    with httpx.Client(base_url=base_url) as http:
        for blob in [manifest.config, *manifest.layers]:
            started = http.post(f"/v2/{name}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = httpx.URL(base_url).join(started.headers["Location"])
            done = http.put(
                location.copy_merge_params({"digest": str(blob.digest)}),
                content=layout.read_blob(blob.digest, max_size=1 << 30),
            )
            assert done.status_code == 201, done.text
        put = http.put(
            f"/v2/{name}/manifests/{tag}", content=manifest.raw, headers={"Content-Type": manifest.media_type}
        )
        assert put.status_code == 201, put.text
