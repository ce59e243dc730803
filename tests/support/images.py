"""Build test images in Python (tarfile + gzip): OCI layouts with small or large layers, and multi-arch indexes.

::

    from tests.support.images import write_image, write_index, write_random_image

    img = write_image(tmp_path / "layout", "1.0", [{"hello.txt": b"hi"}, {"etc/motd": b"x" * 100}])
    img.manifest.digest, img.config_digest, img.layer_digests, img.blobs  # blobs: digest -> bytes
    idx = write_index(tmp_path / "multi", "multi", [("linux", "amd64"), ("linux", "arm64")])
    big = write_random_image(tmp_path / "big", "big", count=16, size=32 << 20)  # incompressible, streamed

Everything is deterministic (mtime 0, fixed names) except ``write_random_image`` (random content). Layouts are
written with regtool's own OciLayout, which the image helper tests separately.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Descriptor, Manifest, Platform, parse_manifest

__all__ = [
    "BuiltImage",
    "BuiltIndex",
    "gzip_bytes",
    "image_manifest",
    "tar_bytes",
    "write_image",
    "write_index",
    "write_random_image",
]


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar of ``files`` (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


@dataclass(frozen=True)
class BuiltImage:
    manifest: Manifest
    config: bytes
    layers: tuple[bytes, ...]
    diff_ids: tuple[str, ...]
    platform: Platform

    @property
    def config_digest(self) -> Digest:
        return Digest.of(self.config)

    @property
    def layer_digests(self) -> tuple[Digest, ...]:
        return tuple(Digest.of(layer) for layer in self.layers)

    @property
    def blobs(self) -> dict[Digest, bytes]:
        out = {Digest.of(self.config): self.config}
        out.update({Digest.of(layer): layer for layer in self.layers})
        return out


@dataclass(frozen=True)
class BuiltIndex:
    manifest: Manifest
    children: tuple[BuiltImage, ...] = field(default_factory=tuple)


def image_manifest(
    layer_files: Sequence[Mapping[str, bytes]],
    *,
    os_name: str = "linux",
    arch: str = "amd64",
    variant: str | None = None,
    docker: bool = False,
    entrypoint: Sequence[str] = ("/bin/sh",),
    env: Sequence[str] = ("PATH=/usr/bin:/bin",),
    labels: Mapping[str, str] | None = None,
) -> BuiltImage:
    """An image (config, gzip layers, manifest) in memory; ``docker`` makes Docker schema2 media types."""
    tars = [tar_bytes(files) for files in layer_files]
    layers = tuple(gzip_bytes(t) for t in tars)
    diff_ids = tuple(str(Digest.of(t)) for t in tars)
    config_doc: dict[str, object] = {
        "architecture": arch,
        "os": os_name,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Entrypoint": list(entrypoint), "Env": list(env), "Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(tars))],
    }
    if variant:
        config_doc["variant"] = variant
    config = json.dumps(config_doc, sort_keys=True).encode()
    manifest_type = mt.DOCKER_MANIFEST_V2 if docker else mt.OCI_MANIFEST
    config_type = mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG
    layer_type = mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    doc = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": str(Digest.of(layer)), "size": len(layer)} for layer in layers],
    }
    raw = json.dumps(doc, indent=3).encode()
    return BuiltImage(parse_manifest(raw, manifest_type), config, layers, diff_ids, Platform(arch, os_name, variant))


def _store(layout: OciLayout, image: BuiltImage) -> None:
    for digest, data in image.blobs.items():
        layout.blobs.put_bytes(digest, data)
    layout.blobs.put_bytes(image.manifest.digest, image.manifest.raw)


def write_image(
    path: Path, tag: str | None, layer_files: Sequence[Mapping[str, bytes]], **options: object
) -> BuiltImage:
    """Write an image into the OCI layout at ``path`` (created if needed), tagged ``tag``."""
    image = image_manifest(layer_files, **options)  # type: ignore[arg-type]
    layout = OciLayout.open(path, create=True)
    _store(layout, image)
    layout.add_manifest(image.manifest.descriptor(), ref_name=tag)
    return image


def assert_layout_holds(layout_dir: Path, image: BuiltImage) -> None:
    """The OCI layout at ``layout_dir`` holds ``image`` alone: its one entry is the image's manifest, and every
    blob the image has is there with the same bytes."""
    (entry,) = OciLayout.open(layout_dir).entries()
    assert entry.digest == image.manifest.digest
    for digest, data in image.blobs.items():
        assert (layout_dir / "blobs" / digest.algorithm / digest.encoded).read_bytes() == data


def write_index(
    path: Path,
    tag: str | None,
    platforms: Sequence[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
    *,
    docker: bool = False,
) -> BuiltIndex:
    """An index (or Docker manifest list) over one small image per platform, each with distinct layers."""
    layout = OciLayout.open(path, create=True)
    children: list[BuiltImage] = []
    entries: list[dict[str, object]] = []
    for os_name, arch in platforms:
        child = image_manifest(
            [{f"{os_name}-{arch}/base.txt": f"base for {arch}".encode()}, {"app.txt": f"app {arch}".encode()}],
            os_name=os_name,
            arch=arch,
            docker=docker,
        )
        _store(layout, child)
        children.append(child)
        entry = child.manifest.descriptor(platform=Platform(arch, os_name)).to_json()
        entries.append(entry)
    media_type = mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, indent=2).encode()
    index = parse_manifest(raw, media_type)
    layout.blobs.put_bytes(index.digest, raw)
    layout.add_manifest(index.descriptor(), ref_name=tag)
    return BuiltIndex(index, tuple(children))


def write_random_image(path: Path, tag: str, *, count: int, size: int, gzip_layers: bool = True) -> Manifest:
    """An image of ``count`` layers, each a tar of one file of ``size`` random bytes (incompressible).

    With ``gzip_layers`` (the default) each layer is a gzip stream at level 0 (valid gzip, no size change, fast to
    write), media type tar+gzip, as registries usually hold them; otherwise a plain tar. Layers are streamed to
    disk in 1 MiB pieces: nothing of ``size`` is held in memory.
    """
    layout = OciLayout.open(path, create=True)
    layers: list[Descriptor] = []
    diff_ids: list[str] = []
    for i in range(count):
        tmp = path / f".layer-{i}.tar"
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data-{i}.bin")
            info.size = size
            info.mtime = 0
            tar.addfile(info, _RandomReader(size))
        diff_id = _file_digest(tmp)
        if gzip_layers:
            packed = path / f".layer-{i}.tar.gz"
            with open(tmp, "rb") as src, open(packed, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, mtime=0) as gz:
                    while chunk := src.read(1 << 20):
                        gz.write(chunk)
            tmp.unlink()
            tmp = packed
        digest = _file_digest(tmp)
        blob_size = tmp.stat().st_size
        target = layout.blobs.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        layers.append(Descriptor(mt.OCI_LAYER_GZIP if gzip_layers else mt.OCI_LAYER, digest, blob_size))
        diff_ids.append(str(diff_id))
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}
    ).encode()
    config_digest = layout.blobs.put_bytes(None, config)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
        "layers": [d.to_json() for d in layers],
    }
    raw = json.dumps(doc).encode()
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    layout.blobs.put_bytes(manifest.digest, raw)
    layout.add_manifest(manifest.descriptor(), ref_name=tag)
    return manifest


class _RandomReader(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def _file_digest(path: Path) -> Digest:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return Digest("sha256", h.hexdigest())
