"""The one docker-archive writer: an image's archive planned from its manifest and config, then written in order.

``plan_archive`` fixes everything but the layers' bytes: the member names, the small members (each layer's v1
directory, VERSION and legacy JSON before it; the config, manifest.json and ``repositories`` after the last), and
the diff_id each layer must hash to. ``ArchiveWriter`` writes that plan into a temporary file and renames it over
the destination once the last layer is in, so a failure never leaves a partial archive there::

    <v1id>/                  one directory per layer, root first
    <v1id>/VERSION           "1.0"
    <v1id>/json              the legacy v1 image JSON (id/parent chain)
    <v1id>/layer.tar         the layer, UNCOMPRESSED; its sha256 must equal the config's diff_id
    <confighex>.json         the image config, byte-exact
    manifest.json            [{"Config": "<confighex>.json", "RepoTags": [...], "Layers": ["<v1id>/layer.tar", ...]}]
    repositories             {"repo": {"tag": "<top v1id>"}} (read by pre-1.10 docker load)

A layer's size is known only once it is decompressed, so its header's block is reserved, its bytes follow, and
the header is written over the reservation when the layer ends: the bytes go to the file once, in the order the
archive holds them, whoever produces them (``docker_archive.write_docker_archive`` from a local store, or a
pull's ``layer_unpack.UnpackingStore`` while the layers download). The output depends only on the image, the
tags and the v1 chain.

v1 ids: from a v2 image they are synthetic, ``sha256(parent_v1id + "\\n" + diff_id)`` (the root's parent is
the empty string), with a minimal legacy JSON; a v1 pull passes ``v1_chain`` (``V1Image`` per layer, root
first; ``regtool.image.convert.V1Image`` fits) to keep the real ids and JSON bytes.

Example::

    plan = plan_archive(manifest, config_bytes, ["busybox:latest"], Path("busybox.tar"))
    writer = ArchiveWriter(plan)
    for layer in plan.layers:
        writer.begin_layer()
        writer.write(tar_bytes_of(layer))
        writer.end_layer(diff_id_of(layer))
    writer.commit()
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from regtool.digest import Digest
from regtool.errors import ImageFormatError, IntegrityError, InvalidDigest
from regtool.manifest import Descriptor, ImageConfig, Manifest, ManifestError
from regtool.protocol.v1 import IMAGE_ID_RE

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ArchivePlan", "ArchiveWriter", "V1Image", "parse_config", "plan_archive", "synthetic_v1_ids"]

_BLOCK = 512
_CHUNK = 1 << 20
# How much of a layer goes into the archive before its pages are handed to writeback (``_Writeback``).
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


def parse_config(raw: bytes, where: str) -> ImageConfig:
    """The image config ``raw``; ImageFormatError naming ``where`` when it is not one."""
    try:
        return ImageConfig.parse(raw)
    except ManifestError as exc:
        raise ImageFormatError(f"{where}: image config {exc}") from None


@dataclass(frozen=True, slots=True)
class ArchivePlan:
    """A docker-archive of one image, all but its layers' bytes: what ``ArchiveWriter`` writes, in order.

    ``before_layers[i]`` are the members written just before layer ``i`` (its directory, VERSION and legacy
    JSON), ``tail`` everything after the last layer, the end-of-archive blocks included.
    """

    out_path: Path
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[Digest, ...]
    layer_names: tuple[str, ...]
    before_layers: tuple[bytes, ...]
    tail: bytes


def plan_archive(
    manifest: Manifest,
    config_bytes: bytes,
    repo_tags: Sequence[str],
    out_path: Path,
    *,
    v1_chain: Sequence[V1Image] | None = None,
) -> ArchivePlan:
    """Plan the docker-archive of the image ``manifest`` at ``out_path``.

    ``repo_tags`` are ``repo:tag`` names for manifest.json and ``repositories``. ``v1_chain``, root first and one
    per layer, keeps real v1 ids and JSON. IntegrityError when the config does not match the manifest;
    ImageFormatError when the image cannot be expressed as a docker-archive.
    """
    out_path = Path(out_path)
    if manifest.kind != "image" or manifest.config is None:
        raise ImageFormatError(f"{out_path}: a docker-archive holds one image manifest, not a {manifest.kind}")
    actual = Digest.of(config_bytes, manifest.config.digest.algorithm)
    if actual != manifest.config.digest:
        raise IntegrityError(f"config {manifest.config.digest}: digest mismatch: content hashes to {actual}")
    config = parse_config(config_bytes, f"config {manifest.config.digest}")
    config_data: dict[str, Any] = json.loads(config_bytes)
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageFormatError(
            f"{out_path}: the config lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers"
        )
    if v1_chain is not None and len(v1_chain) != len(manifest.layers):
        raise ImageFormatError(f"{out_path}: v1 chain of {len(v1_chain)} images for {len(manifest.layers)} layers")
    diff_ids: list[Digest] = []
    for i, text in enumerate(config.diff_ids):
        try:
            diff_ids.append(Digest.parse(text))
        except InvalidDigest:
            raise ImageFormatError(f"config {manifest.config.digest}: diff_ids[{i}] {text[:80]!r} is invalid") from None
    ids = [img.id for img in v1_chain] if v1_chain is not None else synthetic_v1_ids(config.diff_ids)
    for v1id in ids:
        if not IMAGE_ID_RE.match(v1id):  # it names a directory in the tar
            raise ImageFormatError(f"{out_path}: invalid v1 image id {v1id[:80]!r}")
    before: list[bytes] = []
    for i, v1id in enumerate(ids):
        legacy = (
            v1_chain[i].json
            if v1_chain is not None
            else _legacy_json(config_data, v1id, ids[i - 1] if i else None, top=i == len(ids) - 1)
        )
        before.append(_directory(v1id) + _member(f"{v1id}/VERSION", b"1.0") + _member(f"{v1id}/json", legacy))
    config_name = f"{manifest.config.digest.encoded}.json"
    entry = {"Config": config_name, "RepoTags": list(repo_tags), "Layers": [f"{i}/layer.tar" for i in ids]}
    tail = _member(config_name, config_bytes) + _member(
        "manifest.json", json.dumps([entry], separators=(",", ":")).encode()
    )
    if repo_tags and ids:
        repositories: dict[str, dict[str, str]] = {}
        for repo_tag in repo_tags:
            name, tag = _split_repo_tag(repo_tag)
            repositories.setdefault(name, {})[tag] = ids[-1]
        tail += _member("repositories", json.dumps(repositories, separators=(",", ":")).encode())
    return ArchivePlan(
        out_path=out_path,
        layers=tuple(manifest.layers),
        diff_ids=tuple(diff_ids),
        layer_names=tuple(f"{v1id}/layer.tar" for v1id in ids),
        before_layers=tuple(before),
        tail=tail + bytes(2 * _BLOCK),
    )


class ArchiveWriter:
    """Writes an ``ArchivePlan`` into a temporary file in ``tmp_dir`` (default: beside the destination), one
    layer after the other; ``commit`` renames it over the destination.

    Not thread-safe: one thread at a time drives it (``layer_unpack`` hands it from thread to thread). A layer
    begun again before it ended starts over at its first byte, so an attempt that failed halfway is redone.
    """

    def __init__(self, plan: ArchivePlan, *, tmp_dir: Path | None = None) -> None:
        self.plan = plan
        directory = tmp_dir if tmp_dir is not None else plan.out_path.parent
        directory.mkdir(parents=True, exist_ok=True)
        self.tmp_path = directory / f".{plan.out_path.name}.{secrets.token_hex(6)}.tmp"
        # Created as any new file is (0666 less the umask, as docker save and skopeo do): a user whose umask
        # keeps their files private keeps the image private too.
        fd = os.open(self.tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        self._fd: int | None = fd
        # Layers complete in the file; the next one to begin is ``plan.layers[placed]``.
        self.placed = 0
        self._at = 0
        self._layer_start: int | None = None
        self._writeback = _Writeback(fd)

    def begin_layer(self) -> None:
        """Start layer ``placed``: the members before it and room for its header (again: start it over)."""
        if self._layer_start is None:
            self._put(self.plan.before_layers[self.placed])
            self._at += _BLOCK
            self._layer_start = self._at
        else:
            self._at = self._layer_start

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the current layer."""
        assert self._layer_start is not None, "no layer begun"
        self._put(data)

    def copy_from(self, src: int, size: int) -> None:
        """Append the first ``size`` bytes of the file ``src`` to the current layer, kernel-side where it can."""
        assert self._fd is not None and self._layer_start is not None, "no layer begun"
        copied = 0
        kernel = True
        while copied < size:
            n = _copy_range(src, copied, self._fd, self._at, min(_WRITEBACK, size - copied)) if kernel else 0
            if n:
                self._at += n
                self._writeback.note(self._at)
            else:  # no kernel-side copy between these files: the rest through user space
                kernel = False
                chunk = os.pread(src, min(_CHUNK, size - copied), copied)
                if not chunk:
                    raise ImageFormatError(f"{self.plan.out_path}: a layer's file ended {size - copied} bytes early")
                self._put(chunk)
                n = len(chunk)
            copied += n

    def end_layer(self, diff_id: Digest) -> None:
        """End the current layer, whose bytes hash to ``diff_id``: IntegrityError unless that is the config's."""
        assert self._layer_start is not None, "no layer begun"
        index = self.placed
        expected = self.plan.diff_ids[index]
        if diff_id != expected:
            raise IntegrityError(
                f"layer {self.plan.layers[index].digest}: uncompressed content hashes to {diff_id}, "
                f"but the config's diff_id is {expected}"
            )
        size = self._at - self._layer_start
        header = _header(_tarinfo(self.plan.layer_names[index], size))
        if len(header) != _BLOCK:  # pragma: no cover - names here are short, GNU sizes use base-256
            raise ImageFormatError(f"tar member {self.plan.layer_names[index]!r} needs an extended header")
        self._pwrite(header, self._layer_start - _BLOCK)
        self._put(_padding(size))
        self._layer_start = None
        self.placed += 1

    def commit(self) -> Path:
        """Write what follows the last layer, make the file durable and rename it over the destination."""
        assert self._fd is not None and self.placed == len(self.plan.layers), "layers missing"
        self._put(self.plan.tail)
        os.ftruncate(self._fd, self._at)  # a layer started over may have been longer the first time
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        try:
            os.replace(self.tmp_path, self.plan.out_path)
        except BaseException:  # the destination cannot be replaced (a directory, gone read-only): nothing left
            self.tmp_path.unlink(missing_ok=True)
            raise
        return self.plan.out_path

    def discard(self) -> None:
        """Drop the temporary file (nothing is left at the destination). Idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self.tmp_path.unlink(missing_ok=True)

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        self._pwrite(data, self._at)
        self._at += len(data)
        self._writeback.note(self._at)

    def _pwrite(self, data: bytes | bytearray | memoryview, at: int) -> None:
        assert self._fd is not None, "the archive is closed"
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, at)
            view, at = view[written:], at + written


class _Writeback:
    """Every _WRITEBACK bytes, asks the kernel to start writing the archive's new pages out (``posix_fadvise``
    DONTNEED starts writeback of dirty pages): the disk then works while the layers go on arriving, and the
    archive's one fsync finds little left to write instead of the whole archive."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._from = 0

    def note(self, at: int) -> None:
        if at < self._from:  # a layer started over
            self._from = at
        elif at - self._from >= _WRITEBACK:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(self._fd, self._from, at - self._from, os.POSIX_FADV_DONTNEED)
            self._from = at


def _copy_range(src: int, src_at: int, dst: int, dst_at: int, size: int) -> int:
    """Copy up to ``size`` bytes from ``src`` at ``src_at`` to ``dst`` at ``dst_at`` with copy_file_range (no
    pass through user space, and a reflink where the filesystem has them); how many were copied (0: none, or no
    such copy between these files)."""
    try:
        return os.copy_file_range(src, dst, size, src_at, dst_at)
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _NO_COPY_RANGE:
            raise
    return 0


def _split_repo_tag(repo_tag: str) -> tuple[str, str]:
    name, sep, tag = repo_tag.rpartition(":")
    if not sep or not name or "/" in tag:
        return repo_tag, "latest"
    return name, tag


def _legacy_json(config: dict[str, Any], v1id: str, parent: str | None, *, top: bool) -> bytes:
    if top:
        data = {k: v for k, v in config.items() if k not in {"rootfs", "history"}}
    else:
        data = {"created": config.get("created", "1970-01-01T00:00:00Z"), "container_config": {"Cmd": None}}
    data["id"] = v1id
    if parent:
        data["parent"] = parent
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


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


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


def _directory(name: str) -> bytes:
    return _header(_tarinfo(name.rstrip("/") + "/", 0, directory=True))


def _member(name: str, data: bytes) -> bytes:
    return _header(_tarinfo(name, len(data))) + data + _padding(len(data))
