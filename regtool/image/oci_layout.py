"""Read and write an OCI image layout (image-spec ``image-layout.md``; protocols.md §6.1).

::

    <dir>/oci-layout              {"imageLayoutVersion": "1.0.0"}
    <dir>/index.json              an OCI index; each entry a manifest (or index) descriptor, tagged by the
                                  annotation org.opencontainers.image.ref.name
    <dir>/blobs/<alg>/<hex>       every manifest, config and layer, byte-exact (a BlobStore on <dir>)
    <dir>/.regtool-staging/       partial blobs of an interrupted pull (ignored by other tools)

Several tags share one layout: ``add_manifest`` keeps one entry per ref name and repository (re-tagging
replaces the old entry; the same tag of another repository is kept beside it, and then names neither alone) and
rewrites index.json atomically under a lock. A layout that already holds some blobs is reused as is, so a
pull into it fetches only what ``layout.blobs.has()`` says is missing.

Example::

    layout = OciLayout.open(Path("out"), create=True)
    layout.blobs.put_bytes(None, manifest.raw)
    layout.add_manifest(manifest.descriptor(), ref_name="1.0", image_name="docker.io/library/busybox:1.0")
    layout.resolve("1.0")  # -> Descriptor
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, IntegrityError, InvalidDigest, InvalidReference, NotFoundError
from regtool.files import write_atomic
from regtool.image.blobstore import STAGING_DIR, BlobStore
from regtool.manifest import Descriptor, Manifest, ManifestError, parse_manifest
from regtool.reference import Reference

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["IMAGE_NAME_ANNOTATION", "LAYOUT_VERSION", "REF_NAME_ANNOTATION", "OciLayout"]

LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
_SMALL_BLOB = 16 << 20


class OciLayout:
    """An OCI image layout directory; ``blobs`` is its content-addressed store."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.blobs = BlobStore(self.path, durable=durable)
        self.index_path = self.path / "index.json"

    def __repr__(self) -> str:
        return f"OciLayout({str(self.path)!r})"

    @classmethod
    def open(cls, path: Path, create: bool = False, *, durable: bool = True) -> OciLayout:
        """Open the layout at ``path``; with ``create``, make it (or the empty directory) a new layout.
        ``durable=False`` is for a scratch layout: its blobs are not fsynced (``BlobStore``).

        ImageFormatError names the path when it is not a layout (or, with ``create``, a non-empty directory
        that is not one).
        """
        path = Path(path)
        layout = cls(path, durable=durable)
        marker = path / "oci-layout"
        if create and not marker.exists():
            if path.exists() and not path.is_dir():
                raise ImageFormatError(f"cannot create an OCI layout at {path}: it is a file")
            if path.is_dir():
                extra = sorted(p.name for p in path.iterdir() if p.name not in {"blobs", STAGING_DIR})
                if extra:
                    raise ImageFormatError(
                        f"cannot create an OCI layout in {path}: directory is not empty ({', '.join(extra[:5])})"
                    )
            layout._create()
        layout._check()
        return layout

    def _create(self) -> None:
        """Make the (absent or empty) directory a layout; what a failure leaves half made is removed again."""
        existed = self.path.is_dir()
        blobs_existed = (self.path / "blobs").exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            # Only where there is none: another pull making the same new layout may have added its image already.
            empty = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
            write_atomic(self.index_path, json.dumps(empty, indent=2).encode() + b"\n", replace=False)
            write_atomic(self.path / "oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        except BaseException:
            if not existed:
                shutil.rmtree(self.path, ignore_errors=True)
            elif not blobs_existed:
                shutil.rmtree(self.path / "blobs", ignore_errors=True)
            raise

    @staticmethod
    def is_new(path: Path) -> bool:
        """True when ``path`` is absent, or holds nothing but a staging area an earlier failed pull left."""
        if not path.exists():
            return True
        try:
            return path.is_dir() and all(child.name == STAGING_DIR for child in path.iterdir())
        except OSError:
            return False

    def take_back_new(self, existed: bool) -> int:
        """Remove what a failed pull into this new layout created but the partials of its staging area; returns
        how many partials stay (none: the layout is gone, and so is its directory unless ``existed`` before).

        Under the index's lock, and only while index.json names no image: another pull into the same new layout
        may have finished meanwhile, and its image stays whole (this pull's blobs stay beside it, unreferenced).
        """
        partials: list[Path] = []
        try:
            with self.index_lock():
                if self.entries():
                    return 0
                staging = self.path / STAGING_DIR
                partials = sorted(staging.glob("*.partial")) if staging.is_dir() else []
                for child in self.path.iterdir():
                    if child.name == STAGING_DIR and partials:
                        continue
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        except (OSError, ImageFormatError):
            # Gone or unreadable already: nothing of it to take back.
            return 0
        if not partials and not existed:
            with contextlib.suppress(OSError):
                self.path.rmdir()
        return len(partials)

    def _check(self) -> None:
        if not self.path.is_dir():
            raise ImageFormatError(f"{self.path} is not an OCI layout: no such directory")
        marker = self.path / "oci-layout"
        try:
            data = json.loads(marker.read_bytes())
        except FileNotFoundError:
            raise ImageFormatError(f"{self.path} is not an OCI layout: no oci-layout file") from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ImageFormatError(f"{marker}: not valid JSON") from None
        version = data.get("imageLayoutVersion") if isinstance(data, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ImageFormatError(f"{marker}: unsupported imageLayoutVersion {version!r} (expected 1.x)")
        self._read_index()

    def _read_index(self) -> dict[str, Any]:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            raise ImageFormatError(f"{self.path} is not an OCI layout: no index.json") from None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ImageFormatError(f"{self.index_path}: not valid JSON") from None
        if not isinstance(data, dict) or data.get("schemaVersion") != 2:
            raise ImageFormatError(f"{self.index_path}: not an image index (schemaVersion must be 2)")
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise ImageFormatError(f"{self.index_path}: no manifests list")
        for i, entry in enumerate(entries):
            try:
                Descriptor.from_json(entry, where=f"manifests[{i}]")
            except ManifestError as exc:
                raise ImageFormatError(f"{self.index_path}: {exc}") from None
        return data

    def _write_index(self, data: dict[str, Any]) -> None:
        write_atomic(self.index_path, json.dumps(data, indent=2).encode() + b"\n")

    @contextlib.contextmanager
    def index_lock(self) -> Iterator[None]:
        """Hold the lock every writer of index.json takes."""
        # The oci-layout file is never replaced once written, so its inode is a stable lock target;
        # index.json itself is renamed over on every write.
        fd = os.open(self.path / "oci-layout", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def entries(self) -> list[Descriptor]:
        """The descriptors of index.json, in order (annotations carry the ref names)."""
        data = self._read_index()
        return [Descriptor.from_json(entry) for entry in data["manifests"]]

    def ref_names(self) -> list[str]:
        """The ref names (tags) of the layout's entries, in index order."""
        return [name for d in self.entries() if (name := d.annotations.get(REF_NAME_ANNOTATION)) is not None]

    def add_manifest(self, descriptor: Descriptor, ref_name: str | None = None, image_name: str | None = None) -> None:
        """Record ``descriptor`` (a manifest or index already in ``blobs``) in index.json.

        ``ref_name`` (a tag) goes into ``org.opencontainers.image.ref.name``; an entry already carrying that
        ref name is replaced, unless both name their image (``image_name``, a full reference, which goes into
        ``io.containerd.image.name``) and the two are of different repositories: pulling ``team/db:1.0`` into a
        layout holding ``team/app:1.0`` keeps both. Without a ref name, an untagged entry of the same digest is
        not added twice.
        """
        if not self.blobs.has(descriptor.digest):
            raise ImageFormatError(f"{self.path}: manifest {descriptor.digest} is not in blobs/; store it first")
        annotations = dict(descriptor.annotations)
        if ref_name is not None:
            annotations[REF_NAME_ANNOTATION] = ref_name
        if image_name is not None:
            annotations[IMAGE_NAME_ANNOTATION] = image_name
        entry = Descriptor(
            media_type=descriptor.media_type,
            digest=descriptor.digest,
            size=descriptor.size,
            urls=descriptor.urls,
            annotations=annotations,
            platform=descriptor.platform,
            artifact_type=descriptor.artifact_type,
        ).to_json()
        with self.index_lock():
            data = self._read_index()
            kept: list[Any] = []
            for old in data["manifests"]:
                old_annotations = old.get("annotations") or {}
                old_name = old_annotations.get(REF_NAME_ANNOTATION)
                if (
                    ref_name is not None
                    and old_name == ref_name
                    and _same_repository(old_annotations.get(IMAGE_NAME_ANNOTATION), image_name)
                ):
                    continue
                if ref_name is None and old_name is None and old.get("digest") == str(descriptor.digest):
                    continue
                kept.append(old)
            kept.append(entry)
            data["manifests"] = kept
            data.setdefault("mediaType", mt.OCI_INDEX)
            self._write_index(data)

    def remove_ref(self, ref_name: str) -> bool:
        """Drop the entry tagged ``ref_name`` from index.json (its blobs stay); False when there was none."""
        with self.index_lock():
            data = self._read_index()
            kept = [e for e in data["manifests"] if (e.get("annotations") or {}).get(REF_NAME_ANNOTATION) != ref_name]
            if len(kept) == len(data["manifests"]):
                return False
            data["manifests"] = kept
            self._write_index(data)
        return True

    def resolve(self, ref_name: str | None = None) -> Descriptor:
        """The entry tagged ``ref_name`` (or whose full image name or digest it is); with None, the only entry.

        NotFoundError when nothing matches, ImageFormatError when None, or a ref name several repositories' images
        share, is ambiguous; all list the names that pick one.
        """
        entries = self.entries()
        names = ", ".join(_labels(entries)) or "none"
        if ref_name is None:
            if len(entries) == 1:
                return entries[0]
            if not entries:
                raise NotFoundError(f"OCI layout {self.path} has no images")
            raise ImageFormatError(f"OCI layout {self.path} holds {len(entries)} images; pick one of: {names}")
        matches = [d for d in entries if d.annotations.get(REF_NAME_ANNOTATION) == ref_name]
        if not matches:
            matches = [d for d in entries if d.annotations.get(IMAGE_NAME_ANNOTATION) == ref_name]
        if not matches:
            with contextlib.suppress(InvalidDigest):
                wanted = Digest.parse(ref_name)
                matches = [d for d in entries if d.digest == wanted]
        if not matches:
            raise NotFoundError(f"no image {ref_name!r} in OCI layout {self.path} (it has: {names})")
        if len({d.digest for d in matches}) > 1 and len(_labels(matches)) == len(matches):
            raise ImageFormatError(
                f"OCI layout {self.path} holds {len(matches)} images tagged {ref_name!r}; "
                f"pick one of: {', '.join(_labels(matches))}"
            )
        return matches[-1]

    def read_blob(self, digest: Digest, *, max_size: int = _SMALL_BLOB) -> bytes:
        """A small blob's bytes (manifest, index, config); NotFoundError when absent."""
        return self.blobs.read_bytes(digest, max_size=max_size)

    def manifest(self, descriptor: Descriptor | Digest) -> Manifest:
        """Read and parse a manifest or index stored in the layout, checking its digest.

        A Descriptor's media type is used as the content type; a bare Digest relies on the body's own.
        """
        digest = descriptor.digest if isinstance(descriptor, Descriptor) else descriptor
        media_type = descriptor.media_type if isinstance(descriptor, Descriptor) else None
        raw = self.read_blob(digest)
        try:
            manifest = parse_manifest(raw, media_type)
        except ManifestError as exc:
            raise ImageFormatError(f"{self.path}: manifest {digest}: {exc}") from None
        if Digest.of(raw, digest.algorithm) != digest:
            raise IntegrityError(f"{self.path}: blob {digest}: digest mismatch: the stored bytes do not match")
        return manifest


def _same_repository(old: str | None, new: str | None) -> bool:
    """Whether two image names (``io.containerd.image.name``) may be the same image's: True unless both parse
    as references of different repositories."""
    if old is None or new is None:
        return True
    try:
        a, b = Reference.parse(old), Reference.parse(new)
    except InvalidReference:
        return True
    return (a.registry, a.repository) == (b.registry, b.repository)


def _labels(entries: list[Descriptor]) -> list[str]:
    """A name that picks each entry: its ref name, its full image name where a ref name is shared, else its
    full digest (what ``resolve`` accepts)."""
    tags = [d.annotations.get(REF_NAME_ANNOTATION) for d in entries]
    labels = []
    for d, tag in zip(entries, tags, strict=True):
        image_name = d.annotations.get(IMAGE_NAME_ANNOTATION)
        if tag is not None and (tags.count(tag) == 1 or image_name is None):
            labels.append(tag)
        else:
            labels.append(image_name if tag is not None and image_name is not None else str(d.digest))
    return list(dict.fromkeys(labels))
