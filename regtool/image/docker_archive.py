"""Write and read ``docker save`` tarballs (docker-archive; protocols.md §6.2).

``write_docker_archive`` writes an image from a local store through the one archive writer
(``archive_writer``: what the archive holds, in which order, and how a failure leaves nothing at ``out_path``);
each layer is decompressed on the fly (gzip, bzip2, xz, plain) into the tar, never held in memory, and checked
against its diff_id. ``docker load`` (1.10+) and ``skopeo copy docker-archive:...`` read manifest.json and check
each layer's diff_id.

``read_docker_archive(path, ref)`` turns an archive into an ImageSource for push: each layer gzipped
deterministically into a temporary BlobStore (``recompressed`` is True), a Docker schema2 manifest built over
them, the config unchanged. ``open_docker_archive`` is its first half (the archive checked, nothing compressed
yet): a push starts the compression itself and uploads each layer while it grows (``client/v2/archivepush``).

Example::

    write_docker_archive(layout, manifest, config_bytes, ["busybox:latest"], Path("busybox.tar"))
    with read_docker_archive(Path("busybox.tar")) as src:
        src.root.layers  # gzip layers, digests deterministic
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import tarfile
import tempfile
import threading
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

from regtool import mediatypes as mt
from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError, IntegrityError, InvalidReference, NotFoundError
from regtool.files import remove_orphans
from regtool.image.archive_layers import LayerCompression, archive_errors
from regtool.image.archive_writer import ArchiveWriter, V1Image, parse_config, plan_archive, synthetic_v1_ids
from regtool.image.blobstore import BlobStore
from regtool.image.compression import Compression, GzipResult, open_decompressed, sniff
from regtool.image.oci_layout import OciLayout
from regtool.image.source import BlobStoreSource
from regtool.manifest import Manifest, ManifestError, parse_manifest
from regtool.reference import Reference

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = [
    "DockerArchiveSource",
    "OpenedArchive",
    "V1Image",
    "open_docker_archive",
    "read_docker_archive",
    "synthetic_v1_ids",
    "write_docker_archive",
    "write_layer_from_blob",
]

_CHUNK = 1 << 20
_BLOCK = 512
_MAX_JSON = 16 << 20
_SNIFF = 8
_TAIL = 64 << 10


def write_docker_archive(
    source: OciLayout | BlobStore,
    manifest: Manifest,
    config_bytes: bytes,
    repo_tags: Sequence[str],
    out_path: Path,
    *,
    v1_chain: Sequence[V1Image] | None = None,
) -> Path:
    """Write the image ``manifest`` (its blobs in ``source``) as a docker-archive at ``out_path``.

    ``repo_tags`` are ``repo:tag`` names for manifest.json and ``repositories``. ``v1_chain``, root first and one
    per layer, keeps real v1 ids and JSON. IntegrityError when the config does not match the manifest or a layer
    does not match its diff_id; ImageFormatError when the image cannot be expressed as a docker-archive.
    """
    store = source.blobs if isinstance(source, OciLayout) else source
    plan = plan_archive(manifest, config_bytes, repo_tags, out_path, v1_chain=v1_chain)
    for layer in plan.layers:
        if not store.has(layer.digest):
            raise NotFoundError(f"layer {layer.digest} is not in {store.root}")
    writer = ArchiveWriter(plan)
    try:
        while writer.placed < len(plan.layers):
            write_layer_from_blob(writer, store)
        return writer.commit()
    except BaseException:
        writer.discard()
        raise


def write_layer_from_blob(writer: ArchiveWriter, store: BlobStore) -> None:
    """Decompress the writer's next layer from its blob in ``store`` into the archive, checking its diff_id."""
    index = writer.placed
    layer = writer.plan.layers[index]
    verifier = DigestVerifier(writer.plan.diff_ids[index].algorithm)
    writer.begin_layer()
    with store.open_reader(layer.digest) as blob, open_decompressed(blob, what=f"layer {layer.digest}") as reader:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            verifier.update(chunk)
    writer.end_layer(verifier.digest())


class DockerArchiveSource(BlobStoreSource):
    """A docker-archive converted for push: gzip layers and a schema2 manifest in a temporary BlobStore."""

    def __init__(
        self,
        store: BlobStore,
        root: Manifest,
        *,
        archive_path: Path,
        repo_tags: tuple[str, ...],
        ref_name: str | None,
        owned_dir: Path | None,
    ) -> None:
        super().__init__(
            store,
            root,
            description=f"docker-archive:{archive_path}",
            ref_name=ref_name,
            recompressed=True,
            owned_dir=owned_dir,
        )
        self.archive_path = archive_path
        self.repo_tags = repo_tags


def _member_map(tar: tarfile.TarFile, archive: Path) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = member.name
        while name.startswith("./"):
            name = name[2:]
        members[name] = member
    # tarfile stops quietly at a header cut short (or garbled) in a plain tar, and fails only on reading a member
    # whose data is missing: check up front that every member's data is there and that only the end-of-archive
    # zeros follow the last one.
    with archive.open("rb") as probe:
        if sniff(probe.read(_SNIFF)) is not Compression.NONE:
            return members
        size = os.fstat(probe.fileno()).st_size
        end = 0
        for name, member in members.items():
            member_end = member.offset_data + (member.size if member.isreg() else 0)
            if member_end > size:
                raise ImageFormatError(
                    f"docker-archive {archive}: truncated: {name!r} needs {member_end} bytes, the file has {size}"
                )
            end = max(end, member_end)
        probe.seek(-(-end // _BLOCK) * _BLOCK)
        if probe.read(_TAIL).strip(b"\0"):
            raise ImageFormatError(f"docker-archive {archive}: truncated or corrupt: unreadable data after the members")
    return members


def _read_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path) -> IO[bytes]:
    member = members.get(name.removeprefix("./"))
    if member is None:
        raise ImageFormatError(f"docker-archive {archive}: no {name!r} in the tar")
    f = tar.extractfile(member)
    if f is None:
        raise ImageFormatError(f"docker-archive {archive}: {name!r} is not a file")
    return f


def _read_json(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path) -> bytes:
    with _read_member(tar, members, name, archive) as f:
        data = f.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        raise ImageFormatError(f"docker-archive {archive}: {name!r} is too large")
    return data


def _repo_tags(entry: Any) -> list[str]:
    tags = entry.get("RepoTags") if isinstance(entry, dict) else None
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _pick_entry(entries: list[Any], ref: str | None, archive: Path) -> dict[str, Any]:
    if ref is None:
        if len(entries) == 1 and isinstance(entries[0], dict):
            return entries[0]
        names = ", ".join(t for e in entries for t in _repo_tags(e)) or "untagged images"
        raise ImageFormatError(f"docker-archive {archive} holds {len(entries)} images; pick one of: {names}")
    # The name as docker reads it (busybox is docker.io/library/busybox:latest) matches first; else a shorter
    # form that ends one of the image's tags (":1.0", "app:1.0"), which must then name one image only.
    wanted = _normalised(ref)
    exact = [e for e in entries if wanted is not None and wanted in {_normalised(t) for t in _repo_tags(e)}]
    if not exact:
        exact = [
            e
            for e in entries
            if any(t in {ref, f"{ref}:latest"} or t.endswith((f"/{ref}", f":{ref}")) for t in _repo_tags(e))
        ]
    if len(exact) == 1:
        return dict(exact[0])
    if len(exact) > 1:
        names = ", ".join(t for e in exact for t in _repo_tags(e))
        raise ImageFormatError(f"{ref!r} names {len(exact)} images in docker-archive {archive}; pick one of: {names}")
    names = ", ".join(t for e in entries for t in _repo_tags(e)) or "none"
    raise NotFoundError(f"no image {ref!r} in docker-archive {archive} (it has: {names})")


def _normalised(name: str) -> str | None:
    try:
        return str(Reference.parse(name))
    except InvalidReference:
        return None


def read_docker_archive(path: Path, ref: str | None = None, *, work_dir: Path | None = None) -> DockerArchiveSource:
    """Open a docker-archive as an ImageSource for push (layers gzipped deterministically; see the module doc).

    ``ref`` picks an image by RepoTag (``repo:tag``, or just the tag) when the archive holds several.
    ImageFormatError names the archive and what is wrong; IntegrityError when a layer does not match its diff_id.
    """
    with open_docker_archive(path, ref, work_dir=work_dir) as opened:
        opened.layers.start()
        return opened.source()


class OpenedArchive:
    """An image of a docker-archive, checked and ready to compress: what a push reads before the layers.

    ``layers.start()`` gzips the layers in threads (``archive_layers.LayerCompression``: each a ``GrowingBlob``
    a push may upload while it grows); ``layer_result(i)`` waits for one and checks it against the config's
    diff_id; ``source()`` waits for all and builds the schema2 manifest over them: the ImageSource, which then owns
    the work directory. ``close()`` stops the threads and, unless ``source()`` took it, removes the directory.
    """

    def __init__(
        self,
        path: Path,
        ref: str | None,
        entry: dict[str, Any],
        config_bytes: bytes,
        diff_ids: list[str],
        layers: LayerCompression,
        layer_sizes: list[int],
        tar: tarfile.TarFile,
        work_dir: Path,
    ) -> None:
        self.path = path
        self.ref = ref
        self.entry = entry
        self.config_bytes = config_bytes
        self.diff_ids = diff_ids
        self.layers = layers
        # The layers' tar sizes (uncompressed), known before any is read.
        self.layer_sizes = layer_sizes
        self._tar = tar
        self._work_dir: Path | None = work_dir

    def layer_result(self, index: int, cancel: threading.Event | None = None) -> GzipResult:
        """Layer ``index`` once compressed: IntegrityError when its tar does not hash to the config's diff_id."""
        result = self.layers.blobs[index].result(cancel)
        if str(result.diff_id) != self.diff_ids[index]:
            raise IntegrityError(
                f"docker-archive {self.path}: layer {self.layers.names[index]}: content hashes to "
                f"{result.diff_id}, but the config's diff_id is {self.diff_ids[index]}"
            )
        return result

    def source(self) -> DockerArchiveSource:
        """Wait for every layer and build the ImageSource (it owns the work directory from here on)."""
        results = [self.layer_result(i) for i in range(len(self.diff_ids))]
        store = self.layers.store
        layers = [{"mediaType": mt.DOCKER_LAYER, "size": r.size, "digest": str(r.digest)} for r in results]
        config_digest = store.put_bytes(None, self.config_bytes)
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST_V2,
            "config": {"mediaType": mt.DOCKER_CONFIG, "size": len(self.config_bytes), "digest": str(config_digest)},
            "layers": layers,
        }
        raw = json.dumps(manifest_doc, indent=3).encode()
        store.put_bytes(None, raw)
        try:
            root = parse_manifest(raw)
        except ManifestError as exc:  # pragma: no cover - built above
            raise ImageFormatError(f"docker-archive {self.path}: {exc}") from None
        tags = tuple(_repo_tags(self.entry))
        owned, self._work_dir = self._work_dir, None
        return DockerArchiveSource(
            store,
            root,
            archive_path=self.path,
            repo_tags=tags,
            ref_name=self.ref or (tags[0] if tags else None),
            owned_dir=owned,
        )

    def close(self) -> None:
        self.layers.close()
        self._tar.close()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# A push's work directory: regtool-archive-<pid>-<random>. The pid lets a later push remove the directory of one
# that was killed (SIGKILL, or SIGTERM, which a client command does not catch) and so never cleaned up.
_WORK_PREFIX = "regtool-archive-"


def open_docker_archive(path: Path, ref: str | None = None, *, work_dir: Path | None = None) -> OpenedArchive:
    """Read and check a docker-archive's manifest.json, config and layer members, without compressing anything.

    ``ref`` picks an image by RepoTag (``repo:tag``, or just the tag) when the archive holds several; the layers
    are gzipped into a new directory under ``work_dir`` (default: the system's temp directory), where the
    directories of killed pushes are removed first. ImageFormatError names the archive and what is wrong.
    """
    path = Path(path)
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ImageFormatError(f"docker-archive {path}: not a readable tar ({exc})") from None
    tmp_dir: Path | None = None
    try:
        with archive_errors(path):
            members = _member_map(tar, path)
            try:
                entries = json.loads(_read_json(tar, members, "manifest.json", path))
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise ImageFormatError(f"docker-archive {path}: manifest.json is not valid JSON") from None
            if not isinstance(entries, list) or not entries:
                raise ImageFormatError(f"docker-archive {path}: manifest.json is not a non-empty list")
            entry = _pick_entry(entries, ref, path)
            config_name, layer_names = entry.get("Config"), entry.get("Layers")
            if not isinstance(config_name, str) or not isinstance(layer_names, list):
                raise ImageFormatError(f"docker-archive {path}: manifest.json entry lacks Config or Layers")
            config_bytes = _read_json(tar, members, config_name, path)
            _check_named_digest(config_name, config_bytes, path)
            config = parse_config(config_bytes, f"docker-archive {path}: {config_name}")
            if len(config.diff_ids) != len(layer_names):
                raise ImageFormatError(
                    f"docker-archive {path}: config has {len(config.diff_ids)} diff_ids for {len(layer_names)} layers"
                )
            names = [str(name) for name in layer_names]
            for name in names:
                _read_member(tar, members, name, path).close()  # every layer exists and is a file, before any work
            with path.open("rb") as probe:
                plain_tar = sniff(probe.read(_SNIFF)) is Compression.NONE
            headers = [members[name.removeprefix("./")] for name in names]
            parallel = plain_tar and all(m.isreg() and not m.issparse() for m in headers)
        remove_orphans(Path(work_dir or tempfile.gettempdir()), _WORK_PREFIX)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=work_dir))
        layers = LayerCompression(
            path,
            names,
            BlobStore(tmp_dir),
            regular=headers if parallel else None,
            open_member=lambda index: _read_member(tar, members, names[index], path),
        )
        sizes = [header.size for header in headers]
        return OpenedArchive(path, ref, entry, config_bytes, list(config.diff_ids), layers, sizes, tar, tmp_dir)
    except BaseException:
        tar.close()
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _check_named_digest(name: str, data: bytes, archive: Path) -> None:
    """A config named by its digest (``<hex>.json``, or ``blobs/sha256/<hex>`` in newer ``docker save``) must hash
    to that name: otherwise the bytes were damaged after the archive was written."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    algorithm = name.rsplit("/", 2)[-2] if name.count("/") >= 1 else "sha256"
    if algorithm not in {"sha256", "sha512"} or len(stem) != (64 if algorithm == "sha256" else 128):
        return
    if any(c not in "0123456789abcdef" for c in stem):
        return
    actual = Digest.of(data, algorithm)
    if actual.encoded != stem:
        raise IntegrityError(f"docker-archive {archive}: {name!r} hashes to {actual}, not to its name")
