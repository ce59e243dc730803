"""Write and read ``docker save`` tarballs (docker-archive; protocols.md §6.2).

What ``write_docker_archive`` writes, in this order::

    <v1id>/                  one directory per layer, root first
    <v1id>/VERSION           "1.0"
    <v1id>/json              the legacy v1 image JSON (id/parent chain)
    <v1id>/layer.tar         the layer, UNCOMPRESSED; its sha256 must equal the config's diff_id
    <confighex>.json         the image config, byte-exact
    manifest.json            [{"Config": "<confighex>.json", "RepoTags": [...], "Layers": ["<v1id>/layer.tar", ...]}]
    repositories             {"repo": {"tag": "<top v1id>"}} (read by pre-1.10 docker load)

``docker load`` (1.10+) and ``skopeo copy docker-archive:...`` read manifest.json and check each layer's
diff_id. Layers are decompressed on the fly (gzip, bzip2, xz, plain) into the tar, never held in memory; the
archive is written to a temp file beside ``out_path`` and renamed, so a failure leaves nothing at ``out_path``.

v1 ids: from a v2 image they are synthetic, ``sha256(parent_v1id + "\\n" + diff_id)`` (the root's parent is
the empty string), with a minimal legacy JSON; a v1 pull passes ``v1_chain`` (``V1Image`` per layer, root
first; ``regtool.image.convert.V1Image`` fits) to keep the real ids and JSON bytes.

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

import contextlib
import errno
import hashlib
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, Self

from regtool import mediatypes as mt
from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError, IntegrityError, InvalidDigest, NotFoundError
from regtool.image.archive_layers import LayerCompression, archive_errors
from regtool.image.blobstore import BlobStore
from regtool.image.compression import Compression, GzipResult, open_decompressed, sniff
from regtool.image.oci_layout import OciLayout
from regtool.image.source import BlobStoreSource
from regtool.manifest import ImageConfig, Manifest, ManifestError, parse_manifest
from regtool.protocol.v1 import IMAGE_ID_RE

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from regtool.image.layer_unpack import UnpackedLayer


__all__ = [
    "DockerArchiveSource",
    "OpenedArchive",
    "V1Image",
    "open_docker_archive",
    "read_docker_archive",
    "synthetic_v1_ids",
    "write_docker_archive",
]

_CHUNK = 1 << 20
_BLOCK = 512
_MAX_JSON = 16 << 20
_SNIFF = 8
_TAIL = 64 << 10
# How much of a layer is copied into the archive before its pages are handed to writeback (_copy_range).
_WRITEBACK = 32 << 20
# What copy_file_range raises where it cannot copy between two files (old kernels, some filesystems).
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


class V1Image(Protocol):
    """One v1 image of a chain: its 64-hex id and its image JSON, byte-exact (``convert.V1Image`` fits)."""

    @property
    def id(self) -> str: ...

    @property
    def json(self) -> bytes: ...


def synthetic_v1_ids(diff_ids: Sequence[str]) -> list[str]:
    """Deterministic v1 ids for a layer chain: ``sha256(parent_id + "\\n" + diff_id)``, root first."""
    ids: list[str] = []
    parent = ""
    for diff_id in diff_ids:
        parent = hashlib.sha256(f"{parent}\n{diff_id}".encode()).hexdigest()
        ids.append(parent)
    return ids


def _split_repo_tag(repo_tag: str) -> tuple[str, str]:
    name, sep, tag = repo_tag.rpartition(":")
    if not sep or not name or "/" in tag:
        return repo_tag, "latest"
    return name, tag


def _tarinfo(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")


class _TarOut:
    """A minimal tar writer that can stream a member of unknown size into a seekable file."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._f.write(bytes(_BLOCK - size % _BLOCK))

    def add_dir(self, name: str) -> None:
        self._f.write(_header(_tarinfo(name.rstrip("/") + "/", 0, directory=True)))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._f.write(_header(_tarinfo(name, len(data))))
        self._f.write(data)
        self._pad(len(data))

    def add_stream(self, name: str, reader: BinaryIO, verifier: DigestVerifier) -> None:
        """Copy ``reader`` into a member named ``name``, hashing it; the header is written once the size is known."""
        start = self._f.tell()
        self._f.write(bytes(_BLOCK))
        while chunk := reader.read(_CHUNK):
            self._f.write(chunk)
            verifier.update(chunk)
        self._pad(verifier.size)
        end = self._f.tell()
        header = _header(_tarinfo(name, verifier.size))
        if len(header) != _BLOCK:  # pragma: no cover - names here are short, GNU sizes use base-256
            raise ImageFormatError(f"tar member {name!r} needs an extended header")
        self._f.seek(start)
        self._f.write(header)
        self._f.seek(end)

    def add_file(self, name: str, src: Path, size: int) -> None:
        """Copy the file ``src`` of ``size`` bytes into a member named ``name``, kernel-side where it can."""
        self._f.write(_header(_tarinfo(name, size)))
        self._f.flush()
        start = self._f.tell()
        with src.open("rb") as f:
            copied = _copy_range(f.fileno(), self._f.fileno(), size, start)
            if copied < size:  # no kernel-side copy between these files: the rest through user space
                f.seek(copied)
                self._f.seek(start + copied)
                shutil.copyfileobj(f, self._f, _CHUNK)
                copied = self._f.tell() - start
        if copied != size:
            raise ImageFormatError(f"tar member {name!r}: {src} held {copied} bytes, {size} expected")
        self._f.seek(start + size)
        self._pad(size)

    def finish(self) -> None:
        self._f.write(bytes(2 * _BLOCK))


def _copy_range(src: int, dst: int, size: int, at: int) -> int:
    """Copy up to ``size`` bytes from ``src``'s start to ``dst`` at ``at`` with copy_file_range (no pass
    through user space, and a reflink where the filesystem has them); how many were copied (0: not available).

    Every _WRITEBACK bytes the kernel is asked to start writing the copied pages out (``posix_fadvise``
    DONTNEED starts writeback of dirty pages): the disk then works while the copy goes on, and the archive's
    one fsync finds little left to write instead of the whole archive."""
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(src, dst, min(size - copied, _WRITEBACK), copied, at + copied)
            if n == 0:
                break
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(dst, at + copied, n, os.POSIX_FADV_DONTNEED)
            copied += n
    except (AttributeError, OSError) as exc:
        if copied or (isinstance(exc, OSError) and exc.errno not in _NO_COPY_RANGE):
            raise
    return copied


def _legacy_json(config: dict[str, Any], v1id: str, parent: str | None, *, top: bool) -> bytes:
    if top:
        data = {k: v for k, v in config.items() if k not in {"rootfs", "history"}}
    else:
        data = {"created": config.get("created", "1970-01-01T00:00:00Z"), "container_config": {"Cmd": None}}
    data["id"] = v1id
    if parent:
        data["parent"] = parent
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def write_docker_archive(
    source: OciLayout | BlobStore,
    manifest: Manifest,
    config_bytes: bytes,
    repo_tags: Sequence[str],
    out_path: Path,
    *,
    v1_chain: Sequence[V1Image] | None = None,
    consume: bool = False,
    unpacked: Mapping[Digest, UnpackedLayer] | None = None,
) -> Path:
    """Write the image ``manifest`` (its blobs in ``source``) as a docker-archive at ``out_path``.

    ``consume`` removes each layer blob from ``source`` once it is in the archive (a scratch layout's: the
    kernel then drops its pages instead of writing them to disk). ``unpacked`` holds layers already decompressed
    beside their blobs (``layer_unpack``): those are copied in whole; the others are decompressed here.

    ``repo_tags`` are ``repo:tag`` names for manifest.json and ``repositories``. ``v1_chain``, root first and one
    per layer, keeps real v1 ids and JSON. IntegrityError when the config does not match the manifest or a layer
    does not match its diff_id; ImageFormatError when the image cannot be expressed as a docker-archive.
    """
    store = source.blobs if isinstance(source, OciLayout) else source
    out_path = Path(out_path)
    if manifest.kind != "image" or manifest.config is None:
        raise ImageFormatError(f"{out_path}: a docker-archive holds one image manifest, not a {manifest.kind}")
    actual = Digest.of(config_bytes, manifest.config.digest.algorithm)
    if actual != manifest.config.digest:
        raise IntegrityError(f"config {manifest.config.digest}: digest mismatch: content hashes to {actual}")
    config = _parse_config(config_bytes, f"config {manifest.config.digest}")
    config_data: dict[str, Any] = json.loads(config_bytes)
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageFormatError(
            f"{out_path}: the config lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers"
        )
    if v1_chain is not None and len(v1_chain) != len(manifest.layers):
        raise ImageFormatError(f"{out_path}: v1 chain of {len(v1_chain)} images for {len(manifest.layers)} layers")
    expected_diff_ids: list[Digest] = []
    for i, text in enumerate(config.diff_ids):
        try:
            expected_diff_ids.append(Digest.parse(text))
        except InvalidDigest:
            raise ImageFormatError(f"config {manifest.config.digest}: diff_ids[{i}] {text[:80]!r} is invalid") from None
    for layer in manifest.layers:
        if not store.has(layer.digest):
            raise NotFoundError(f"layer {layer.digest} is not in {store.root}")
    ids = [img.id for img in v1_chain] if v1_chain is not None else synthetic_v1_ids(config.diff_ids)
    for v1id in ids:
        if not IMAGE_ID_RE.match(v1id):  # it names a directory in the tar
            raise ImageFormatError(f"{out_path}: invalid v1 image id {v1id[:80]!r}")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    tmp = Path(tmp_name)
    # Deleting a consumed layer frees its cached pages, which takes the kernel a while for a large layer: one
    # thread does it while the next layer is copied in.
    discard = ThreadPoolExecutor(1, thread_name_prefix="archive-discard") if consume else None
    discarded: list[Future[None]] = []
    try:
        with os.fdopen(fd, "w+b") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes it 0600
            tar = _TarOut(f)
            for i, layer in enumerate(manifest.layers):
                v1id = ids[i]
                parent = ids[i - 1] if i else None
                legacy = (
                    v1_chain[i].json
                    if v1_chain is not None
                    else _legacy_json(config_data, v1id, parent, top=i == len(ids) - 1)
                )
                tar.add_dir(v1id)
                tar.add_bytes(f"{v1id}/VERSION", b"1.0")
                tar.add_bytes(f"{v1id}/json", legacy)
                ready = (unpacked or {}).get(layer.digest)
                if ready is not None and ready.diff_id.algorithm == expected_diff_ids[i].algorithm:
                    diff_id = ready.diff_id
                    if diff_id == expected_diff_ids[i]:
                        tar.add_file(f"{v1id}/layer.tar", ready.path, ready.size)
                else:
                    verifier = DigestVerifier(expected_diff_ids[i].algorithm)
                    with (
                        store.open_reader(layer.digest) as blob,
                        open_decompressed(blob, what=f"layer {layer.digest}") as r,
                    ):
                        tar.add_stream(f"{v1id}/layer.tar", r, verifier)
                    diff_id = verifier.digest()
                if diff_id != expected_diff_ids[i]:
                    raise IntegrityError(
                        f"layer {layer.digest}: uncompressed content hashes to {diff_id}, "
                        f"but the config's diff_id is {expected_diff_ids[i]}"
                    )
                if discard and layer.digest not in {other.digest for other in manifest.layers[i + 1 :]}:
                    discarded.append(discard.submit(_discard, store, layer.digest, ready))
            config_name = f"{manifest.config.digest.encoded}.json"
            tar.add_bytes(config_name, config_bytes)
            entry = {"Config": config_name, "RepoTags": list(repo_tags), "Layers": [f"{i}/layer.tar" for i in ids]}
            tar.add_bytes("manifest.json", json.dumps([entry], separators=(",", ":")).encode())
            if repo_tags and ids:
                repositories: dict[str, dict[str, str]] = {}
                for repo_tag in repo_tags:
                    name, tag = _split_repo_tag(repo_tag)
                    repositories.setdefault(name, {})[tag] = ids[-1]
                tar.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
            tar.finish()
            for done in discarded:
                done.result()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if discard is not None:
            discard.shutdown(wait=True)
    return out_path


def _discard(store: BlobStore, digest: Digest, unpacked: UnpackedLayer | None) -> None:
    store.remove(digest)
    if unpacked is not None:
        unpacked.path.unlink(missing_ok=True)


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


def _parse_config(raw: bytes, where: str) -> ImageConfig:
    try:
        return ImageConfig.parse(raw)
    except ManifestError as exc:
        raise ImageFormatError(f"{where}: image config {exc}") from None


def _repo_tags(entry: Any) -> list[str]:
    tags = entry.get("RepoTags") if isinstance(entry, dict) else None
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _pick_entry(entries: list[Any], ref: str | None, archive: Path) -> dict[str, Any]:
    if ref is None:
        if len(entries) == 1 and isinstance(entries[0], dict):
            return entries[0]
        names = ", ".join(t for e in entries for t in _repo_tags(e)) or "untagged images"
        raise ImageFormatError(f"docker-archive {archive} holds {len(entries)} images; pick one of: {names}")
    for entry in entries:
        for tag in _repo_tags(entry):
            if tag in {ref, f"{ref}:latest"} or tag.endswith((f"/{ref}", f":{ref}")):
                return dict(entry)
    names = ", ".join(t for e in entries for t in _repo_tags(e)) or "none"
    raise NotFoundError(f"no image {ref!r} in docker-archive {archive} (it has: {names})")


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


def open_docker_archive(path: Path, ref: str | None = None, *, work_dir: Path | None = None) -> OpenedArchive:
    """Read and check a docker-archive's manifest.json, config and layer members, without compressing anything.

    ``ref`` picks an image by RepoTag (``repo:tag``, or just the tag) when the archive holds several; the layers
    are gzipped into a new directory under ``work_dir`` (default: the system's temp directory). ImageFormatError
    names the archive and what is wrong.
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
            config = _parse_config(config_bytes, f"docker-archive {path}: {config_name}")
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
        tmp_dir = Path(tempfile.mkdtemp(prefix="regtool-archive-", dir=work_dir))
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
