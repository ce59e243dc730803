"""Local images to push: the ``ImageSource`` protocol and ``open_source(spec)``.

A source exposes a root manifest (an image manifest or an index, raw bytes kept, so what lands in the registry
has the source's digests), its child manifests, and its blobs as files or streams. Two kinds exist:

- an OCI image layout, ``dir[:tag]`` or ``oci:dir[:tag]`` (the tag is a ref name of its index.json; without
  one the layout must hold a single image), read in place;
- a docker-archive tarball, ``file.tar[:repo:tag]`` or ``docker-archive:file.tar[:repo:tag]``: its layers are
  uncompressed tars, so they are gzipped deterministically into a temporary blob store and a Docker schema2
  manifest is built over them (config unchanged). ``recompressed`` is then True, for the CLI to say so.

Always close a source (or use it as a context manager): a docker-archive source owns a temporary directory.

Example::

    with open_source("out:1.0") as src:
        for layer in src.root.layers:
            with src.open_blob(layer.digest) as f:
                upload(f, src.blob_size(layer.digest))
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, Self, runtime_checkable

from regtool.digest import Digest
from regtool.errors import ImageFormatError, IntegrityError, NotFoundError, UsageError
from regtool.image.oci_layout import IMAGE_NAME_ANNOTATION, OciLayout
from regtool.manifest import Manifest, ManifestError, parse_manifest

if TYPE_CHECKING:
    from types import TracebackType

    from regtool.image.blobstore import BlobStore

__all__ = ["BlobStoreSource", "ImageSource", "OciLayoutSource", "open_source", "parse_source_spec"]


@runtime_checkable
class ImageSource(Protocol):
    """A local image to push: manifests and blobs by digest."""

    @property
    def root(self) -> Manifest:
        """The top manifest or index, raw bytes kept."""
        ...

    @property
    def ref_name(self) -> str | None:
        """The tag or name the image carries in the source (an OCI ref name, a docker RepoTag), if any."""
        ...

    @property
    def recompressed(self) -> bool:
        """True when layers were recompressed (a docker-archive source): digests differ from the tar's."""
        ...

    @property
    def description(self) -> str:
        """A short human name of the source, for messages (``oci:out:1.0``, ``docker-archive:img.tar``)."""
        ...

    def manifest(self, digest: Digest) -> Manifest:
        """A manifest the source holds (the root, or a child of an index); NotFoundError when absent."""
        ...

    def blob_size(self, digest: Digest) -> int:
        """The size of a blob; NotFoundError when absent."""
        ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """Open a blob (config, layer, manifest) for reading; NotFoundError when absent."""
        ...

    def blob_path(self, digest: Digest) -> Path | None:
        """A file holding exactly the blob, when there is one (lets an uploader re-open or mmap it)."""
        ...

    def close(self) -> None:
        """Release what the source holds (temporary files)."""
        ...

    def __enter__(self) -> ImageSource: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class BlobStoreSource:
    """An ImageSource over a BlobStore holding the root manifest and everything it references."""

    def __init__(
        self,
        store: BlobStore,
        root: Manifest,
        *,
        description: str,
        ref_name: str | None = None,
        recompressed: bool = False,
        owned_dir: Path | None = None,
    ) -> None:
        self.store = store
        self._root = root
        self._description = description
        self._ref_name = ref_name
        self._recompressed = recompressed
        self._owned_dir = owned_dir
        self._media_types = {d.digest: d.media_type for d in root.manifests}

    @property
    def root(self) -> Manifest:
        return self._root

    @property
    def ref_name(self) -> str | None:
        return self._ref_name

    @property
    def recompressed(self) -> bool:
        return self._recompressed

    @property
    def description(self) -> str:
        return self._description

    def manifest(self, digest: Digest) -> Manifest:
        if digest == self._root.digest:
            return self._root
        if not self.store.has(digest):
            raise NotFoundError(f"manifest {digest} not found in {self._description}")
        raw = self.store.read_bytes(digest)
        try:
            manifest = parse_manifest(raw, self._media_types.get(digest))
        except ManifestError as exc:
            raise ImageFormatError(f"{self._description}: manifest {digest}: {exc}") from None
        if Digest.of(raw, digest.algorithm) != digest:
            raise IntegrityError(f"{self._description}: manifest {digest}: digest mismatch: stored bytes differ")
        return manifest

    def blob_size(self, digest: Digest) -> int:
        size = self.store.size(digest)
        if size is None:
            raise NotFoundError(f"blob {digest} not found in {self._description}")
        return size

    def open_blob(self, digest: Digest) -> BinaryIO:
        if not self.store.has(digest):
            raise NotFoundError(f"blob {digest} not found in {self._description}")
        return self.store.open_reader(digest)

    def blob_path(self, digest: Digest) -> Path | None:
        path = self.store.path(digest)
        return path if path.is_file() else None

    def close(self) -> None:
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class OciLayoutSource(BlobStoreSource):
    """An OCI image layout read in place; ``ref_name`` picks the index.json entry."""

    def __init__(self, layout: OciLayout, ref_name: str | None = None) -> None:
        descriptor = layout.resolve(ref_name)
        root = layout.manifest(descriptor)
        name = ref_name or descriptor.annotations.get("org.opencontainers.image.ref.name")
        where = f"oci:{layout.path}" + (f":{ref_name}" if ref_name else "")
        super().__init__(layout.blobs, root, description=where, ref_name=name)
        self.layout = layout
        # Where this image was pulled from (the full reference regtool, containerd and skopeo record); a push
        # to the same registry can mount its blobs from there instead of uploading them.
        self.origin: str | None = descriptor.annotations.get(IMAGE_NAME_ANNOTATION)


def parse_source_spec(spec: str) -> tuple[str, Path, str | None]:
    """Split ``[oci:|docker-archive:]path[:ref]`` into (kind, path, ref); kind is ``oci`` or ``docker-archive``.

    Without a prefix the kind is taken from the path: a directory is a layout, a file a docker-archive. The
    path is the whole spec when that exists, else its shortest ``:``-prefix that exists.
    """
    kind: str | None = None
    for prefix in ("oci:", "docker-archive:"):
        if spec.startswith(prefix):
            kind, spec = prefix[:-1], spec[len(prefix) :]
            break
    path_text, ref = spec, None
    if not Path(path_text).exists():
        head, sep, tail = spec.partition(":")
        while sep:
            if Path(head).exists():
                path_text, ref = head, tail or None
                break
            more, sep, tail = tail.partition(":")
            head = f"{head}:{more}"
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"image source {spec!r}: no such file or directory")
    if kind is None:
        kind = "oci" if path.is_dir() else "docker-archive"
    if kind == "oci" and not path.is_dir():
        raise ImageFormatError(f"image source {path}: an OCI layout must be a directory")
    if kind == "docker-archive" and not path.is_file():
        raise ImageFormatError(f"image source {path}: a docker-archive must be a tar file")
    return kind, path, ref


def open_source(spec: str, *, work_dir: Path | None = None) -> BlobStoreSource:
    """Open a local image for push (see the module docstring for the forms of ``spec``).

    ``work_dir`` is where a docker-archive's recompressed layers go (default: the system temp directory).
    """
    kind, path, ref = parse_source_spec(spec)
    if kind == "oci":
        return OciLayoutSource(OciLayout.open(path), ref)
    from regtool.image.docker_archive import read_docker_archive

    return read_docker_archive(path, ref, work_dir=work_dir)
