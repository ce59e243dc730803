"""The registry's content over a storage driver: blobs, repositories, uploads, manifests, tags, referrers.

Blocking code: handlers call these methods in a worker thread (one hop per operation). The layout is drawn in
``paths``. Errors are ``ApiError`` with the distribution error code that fits (BLOB_UNKNOWN, NAME_UNKNOWN, ...).

Invariants that make crashes harmless:

- a blob's ``data`` appears only by an atomic rename of a fully written, fsynced, digest-verified file;
- a repository link, tag or revision is written (atomically) only after the content it names is in place;
- uploads live in ``uploads/<id>/`` and are never read as blobs.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from regtool.digest import Digest, DigestVerifier
from regtool.errors import InvalidDigest
from regtool.manifest import Manifest, ManifestError, parse_manifest
from regtool.protocol.errcodes import ErrorCode
from regtool.server.cache.descriptors import BlobDescriptor, DescriptorCache
from regtool.server.errors import ApiError
from regtool.server.storage import paths
from regtool.server.storage.driver import FileWriter, PathNotFound, StorageDriver

__all__ = ["BlobStore", "Registry", "StoredManifest", "UploadHashes"]

HASH_CHUNK = 1024 * 1024


class BlobStore:
    """Content-addressed blobs shared by every repository (and by the v1 image store).

    With a ``cache`` (shared by every instance), sizes are answered from it once known.
    """

    def __init__(self, driver: StorageDriver, cache: DescriptorCache | None = None) -> None:
        self.driver = driver
        self.cache = cache

    def size(self, digest: Digest) -> int | None:
        """The blob's size, or None when it is not stored."""
        if self.cache is not None:
            _, descriptor = self.cache.blob(None, digest)
            if descriptor is not None:
                return descriptor.size
        size = self.stored_size(digest)
        if size is not None and self.cache is not None:
            self.cache.remember_blob(None, digest, BlobDescriptor(size))
        return size

    def stored_size(self, digest: Digest) -> int | None:
        """The blob's size as the store has it (never the cache's), or None when it is not stored."""
        try:
            return self.driver.stat(paths.blob_data(digest)).size
        except PathNotFound:
            return None

    def delete(self, digest: Digest) -> None:
        """Remove the blob's bytes (garbage collection) and its cached descriptor; PathNotFound if absent."""
        # Forgotten before and after: a reader racing the delete cannot leave a descriptor of bytes now gone.
        if self.cache is not None:
            self.cache.forget_blob(digest)
        self.driver.delete(paths.blob_data(digest).rsplit("/", 1)[0])
        if self.cache is not None:
            self.cache.forget_blob(digest)

    def mark_used(self, digest: Digest) -> None:
        """Record that a write re-uses stored blob ``digest`` now (its bytes uploaded again, a mount): the
        collector reads this time again right before it would remove the blob.

        A small file of its own: refreshing the data's time would rewrite the whole blob on object storage. The
        time is its content, not its modification time: a read is one request on object storage, where a stat
        of a missing key takes three.
        """
        self.driver.put_content(paths.blob_used(digest), repr(time.time()).encode())

    def last_used(self, digest: Digest) -> float | None:
        """When a write last re-used blob ``digest`` (``mark_used``), None when none has."""
        try:
            return float(self.driver.get_content(paths.blob_used(digest)))
        except (PathNotFound, ValueError):
            return None

    def open(self, digest: Digest, offset: int = 0) -> BinaryIO:
        return self.driver.reader(paths.blob_data(digest), offset)

    def get(self, digest: Digest) -> bytes:
        return self.driver.get_content(paths.blob_data(digest))

    def put(self, data: bytes, digest: Digest | None = None) -> Digest:
        """Store small content (a manifest) whose digest is known or computed here."""
        digest = digest or Digest.of(data)
        self.driver.put_content(paths.blob_data(digest), data)
        return digest

    def ingest(self, source: str, digest: Digest) -> None:
        """Move the verified, fsynced driver file ``source`` into place as blob ``digest`` (atomic)."""
        self.driver.move(source, paths.blob_data(digest))

    def temp_writer(self) -> tuple[str, FileWriter]:
        """A fresh file in the upload area, for content whose digest is known only at the end (v1 layers).

        Write, hash, ``commit()`` the writer, then ``ingest(path, digest)``; ``discard(path)`` afterwards (or on
        failure) removes the temp directory.
        """
        upload_id = str(uuid.uuid4())
        # Its start time, as a session's: on object storage a crashed writer leaves only a multipart upload, which
        # no listing shows; with this the upload purge and gc find the directory and abort it.
        self.driver.put_content(paths.upload_info(upload_id), json.dumps({"started": time.time()}).encode())
        path = paths.upload_data(upload_id)
        return path, self.driver.writer(path)

    def discard(self, path: str) -> None:
        """Remove a temp file made by ``temp_writer`` (and its directory)."""
        try:
            self.driver.delete(path.rsplit("/", 1)[0])
        except PathNotFound:
            pass


@dataclass(frozen=True, slots=True)
class StoredManifest:
    raw: bytes
    media_type: str
    digest: Digest


class UploadHashes:
    """In-memory hash state of uploads in progress, so closing an upload does not read the blob again.

    The state is valid only while its byte count equals the upload file's size; after a restart or a failed
    chunk it is dropped, and the upload is hashed from the file when it closes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashers: dict[str, DigestVerifier] = {}

    def for_append(self, upload_id: str, size: int) -> DigestVerifier | None:
        with self._lock:
            hasher = self._hashers.get(upload_id)
            if hasher is None and size == 0:
                hasher = self._hashers[upload_id] = DigestVerifier("sha256")
            if hasher is not None and hasher.size != size:
                del self._hashers[upload_id]
                return None
            return hasher

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._hashers.pop(upload_id, None)


class Registry:
    """v2 content over one driver. ``uploads`` keeps the upload hash state of this process.

    ``cache`` (optional, shared by every instance) keeps blob sizes, repository links and manifest media types,
    so a blob HEAD or a manifest GET by digest need not stat the store; every delete below invalidates it.
    Writes (a mount, an upload's commit, a manifest's references) decide from the store alone: a stale entry
    may answer a read wrongly for a moment, but never becomes a link to bytes the store does not hold.
    """

    def __init__(self, driver: StorageDriver, cache: DescriptorCache | None = None) -> None:
        self.driver = driver
        self.cache = cache
        self.blobs = BlobStore(driver, cache)
        self.hashes = UploadHashes()

    # -- repositories and blob links ---------------------------------------------------------------------------

    def repository_exists(self, name: str) -> bool:
        """Whether ``name`` is a repository, as the catalog counts them: its directory holds one of its own
        (``_layers``, ``_manifests``), where a directory on the way to a deeper repository holds none."""
        try:
            return any(child.startswith("_") for child in self.driver.list(paths.repository_dir(name)))
        except PathNotFound:
            return False

    def blob_linked(self, name: str, digest: Digest) -> bool:
        if self.cache is not None and self.cache.blob(name, digest)[0]:
            return True
        if not self._link_stored(name, digest):
            return False
        if self.cache is not None:
            self.cache.remember_blob(name, digest, None)
            return self._still_linked(name, digest)
        return True

    def _link_stored(self, name: str, digest: Digest) -> bool:
        # A link is a small file, so it is read, not stat-ed: on an object store a read is one request whether
        # the link is there or not, where a stat of a missing path also asks whether it is a directory or an
        # upload in progress.
        try:
            self.driver.get_content(paths.layer_link(name, digest))
        except PathNotFound:
            return False
        return True

    def require_linked(self, name: str, digest: Digest) -> None:
        """BLOB_UNKNOWN unless ``name`` links blob ``digest``: all a redirect to the store needs to know, since a
        link is written only once its blob's bytes are in place (and removed before them)."""
        if not self.blob_linked(name, digest):
            raise self._blob_unknown(name, digest)

    @staticmethod
    def _blob_unknown(name: str, digest: Digest) -> ApiError:
        return ApiError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown to repository {name}", detail=str(digest))

    def stat_blob(self, name: str, digest: Digest) -> int:
        """The size of a blob linked in ``name``; BLOB_UNKNOWN otherwise."""
        linked, descriptor = (False, None) if self.cache is None else self.cache.blob(name, digest)
        size = descriptor.size if linked and descriptor is not None else None
        if size is None:
            # One cache round trip above; on a miss the store answers both questions and the cache learns them.
            linked = linked or self._link_stored(name, digest)
            size = self.blobs.stored_size(digest) if linked else None
            if size is not None and self.cache is not None:
                self.cache.remember_blob(name, digest, BlobDescriptor(size))
                if not self._still_linked(name, digest):
                    size = None
        if size is None:
            raise self._blob_unknown(name, digest)
        return size

    def _still_linked(self, name: str, digest: Digest) -> bool:
        """After the cache learned a link the store showed: the store asked again, and the entry taken back when
        the link is gone. A delete between that read and the cache's write cleared the cache before the write
        landed (it clears before and after removing), so only this second look keeps the deleted link out."""
        if self._link_stored(name, digest):
            return True
        self._take_back(name, digest)
        return False

    def _take_back(self, name: str, digest: Digest) -> None:
        # A cache that cannot be reached took no entry either: nothing to take back, and no read fails for it.
        with contextlib.suppress(ApiError):
            self._forget_link(name, digest)

    def open_blob(self, name: str, digest: Digest, offset: int = 0) -> BinaryIO:
        self.stat_blob(name, digest)
        try:
            return self.blobs.open(digest, offset)
        except PathNotFound:
            if self.cache is not None:
                # The bytes went behind the cache's back (a delete that did not tell it): the entry goes now,
                # so the next HEAD asks the store instead of repeating the cache's stale answer (at best: this
                # answer is BLOB_UNKNOWN either way).
                with contextlib.suppress(ApiError):
                    self.cache.forget_blob(digest)
                    self.cache.forget_link(name, digest)
            raise ApiError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown to repository {name}") from None

    def link_blob(self, name: str, digest: Digest, size: int | None = None) -> None:
        """Link blob ``digest`` (stored already; ``size`` if the caller knows it, for the cache) into ``name``."""
        self.driver.put_content(paths.layer_link(name, digest), str(digest).encode())
        if self.cache is not None:
            self.cache.remember_blob(name, digest, None if size is None else BlobDescriptor(size))

    def unlink_blob(self, name: str, digest: Digest) -> None:
        """Remove the blob's link from ``name`` (and from the cache); BLOB_UNKNOWN when it has none."""
        self._forget_link(name, digest)
        try:
            self.driver.delete(paths.layer_link(name, digest))
        except PathNotFound:
            raise ApiError(
                ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown to repository {name}", detail=str(digest)
            ) from None
        finally:
            self._forget_link(name, digest)

    def _forget_link(self, name: str, digest: Digest) -> None:
        # Called before and after a link is removed; an instance that read the link just before the delete and
        # wrote it to the cache after both looks again (``_still_linked``) and takes its entry back.
        if self.cache is not None:
            self.cache.forget_link(name, digest)

    def mount_blob(self, name: str, source: str, digest: Digest) -> bool:
        """Link a blob of repository ``source`` into ``name``; False when ``source`` does not have it."""
        size = self.blobs.stored_size(digest) if self._link_stored(source, digest) else None
        if size is None:
            return False
        self.blobs.mark_used(digest)
        self.link_blob(name, digest, size)
        return True

    def repositories(self) -> list[str]:
        """Every repository name, sorted."""
        found: list[str] = []

        def walk(prefix: str, components: list[str]) -> None:
            try:
                children = self.driver.list(prefix)
            except PathNotFound:
                return
            if components and any(child.startswith("_") for child in children):
                found.append("/".join(components))
            for child in children:
                if not child.startswith("_"):
                    walk(f"{prefix}/{child}", [*components, child])

        walk(paths.REPOSITORIES, [])
        return sorted(found)

    # -- uploads ----------------------------------------------------------------------------------------------

    def create_upload(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        info = json.dumps({"name": name, "started": time.time()}).encode()
        self.driver.put_content(paths.upload_info(upload_id), info)
        self.driver.writer(paths.upload_data(upload_id)).close()
        return upload_id

    def upload_size(self, name: str, upload_id: str) -> int:
        """The bytes received so far; BLOB_UPLOAD_UNKNOWN for an id that is malformed, absent or not ``name``'s."""
        unknown = ApiError(ErrorCode.BLOB_UPLOAD_UNKNOWN, f"upload {upload_id[:80]!r} unknown to repository {name}")
        if not paths.UPLOAD_ID_RE.match(upload_id):
            raise unknown
        try:
            info = json.loads(self.driver.get_content(paths.upload_info(upload_id)))
            size = self.driver.stat(paths.upload_data(upload_id)).size
        except (PathNotFound, ValueError):
            raise unknown from None
        if not isinstance(info, dict) or info.get("name") != name:
            raise unknown
        return size

    def upload_writer(self, upload_id: str) -> FileWriter:
        return self.driver.writer(paths.upload_data(upload_id), append=True)

    def cancel_upload(self, upload_id: str) -> None:
        self.hashes.drop(upload_id)
        try:
            self.driver.delete(paths.upload_dir(upload_id))
        except PathNotFound:
            pass

    def upload_digest(self, upload_id: str, algorithm: str, size: int) -> Digest:
        """The digest of the upload's bytes: from the kept hash state, else by reading the file."""
        hasher = self.hashes.for_append(upload_id, size)
        if hasher is not None and hasher.algorithm == algorithm:
            return hasher.digest()
        hasher = DigestVerifier(algorithm)
        with self.driver.reader(paths.upload_data(upload_id)) as f:
            while chunk := f.read(HASH_CHUNK):
                hasher.update(chunk)
        return hasher.digest()

    def commit_upload(self, name: str, upload_id: str, expected: Digest, size: int | None = None) -> int:
        """Verify the upload against ``expected``, move it into place and link it; return its size.

        On a mismatch the upload is removed and DIGEST_INVALID raised: nothing is stored. ``size``: the upload's
        length, when the caller has just written it under the upload's lock (on object storage, looking it up
        again costs several requests).
        """
        if size is None:
            size = self.upload_size(name, upload_id)
        data = paths.upload_data(upload_id)
        # Durable before it is read back or moved: fsynced, or on object storage the multipart upload completed
        # (its bytes cannot be read before), which re-reading the upload for its digest needs.
        self.driver.writer(data, append=True).commit()
        actual = self.upload_digest(upload_id, expected.algorithm, size)
        if actual != expected:
            self.cancel_upload(upload_id)
            raise ApiError(
                ErrorCode.DIGEST_INVALID,
                f"upload to {name} hashes to {actual}, not the given {expected}",
                detail={"expected": str(expected), "actual": str(actual)},
            )
        stored = self.blobs.stored_size(expected) is not None
        if stored:
            # The same bytes are stored already: marked as re-used, then looked for again, so a collector that
            # removed them in between is answered by this upload's own copy.
            self.blobs.mark_used(expected)
            stored = self.blobs.stored_size(expected) is not None
        if not stored:
            self.blobs.ingest(data, expected)
        self.link_blob(name, expected, size)
        self.cancel_upload(upload_id)
        return size

    def committed_upload(self, name: str, upload_id: str, digest: Digest) -> int | None:
        """For a close repeated after its upload was stored (a retry, maybe through another instance): the blob's
        size when ``upload_id`` is gone and ``digest`` is in ``name``, else None (the upload is unknown)."""
        if not paths.UPLOAD_ID_RE.match(upload_id) or not self.blob_linked(name, digest):
            return None
        try:
            self.driver.stat(paths.upload_dir(upload_id))
        except PathNotFound:
            return self.blobs.size(digest)
        return None

    # -- manifests, tags, referrers ----------------------------------------------------------------------------

    def resolve(self, name: str, reference: str) -> Digest:
        """The digest a tag or digest reference names in ``name``; MANIFEST_UNKNOWN / NAME_UNKNOWN otherwise."""
        return self._resolve(name, reference)[0]

    def _resolve(self, name: str, reference: str) -> tuple[Digest, str]:
        """``resolve``, with the manifest's media type read on the way (its revision link)."""
        if ":" in reference:
            digest = Digest.parse(reference)
        else:
            try:
                digest = Digest.parse(self.driver.get_content(paths.tag_link(name, reference)).decode())
            except (PathNotFound, InvalidDigest, UnicodeDecodeError):
                raise self._manifest_unknown(name, reference) from None
        media_type = self._manifest_media_type(name, digest)
        if media_type is None:
            raise self._manifest_unknown(name, reference)
        return digest, media_type

    def _manifest_stored(self, name: str, digest: Digest) -> bool:
        try:
            # Read rather than stat-ed, as a blob link is (``_link_stored``).
            self.driver.get_content(paths.manifest_revision(name, digest))
        except PathNotFound:
            return False
        return True

    def _manifest_media_type(self, name: str, digest: Digest) -> str | None:
        """The media type of manifest ``digest`` in ``name`` (its revision link), None when not there."""
        if self.cache is not None:
            cached = self.cache.manifest_media_type(name, digest)
            if cached is not None:
                return cached
        try:
            media_type = self.driver.get_content(paths.manifest_revision(name, digest)).decode()
        except (PathNotFound, UnicodeDecodeError):
            return None
        if self.cache is not None:
            self.cache.remember_manifest(name, digest, media_type)
            # As for a blob's link (``_still_linked``): a delete that landed between the read and the write.
            if not self._manifest_stored(name, digest):
                self._take_back(name, digest)
                return None
        return media_type

    def _manifest_unknown(self, name: str, reference: str) -> ApiError:
        if not self.repository_exists(name):
            return ApiError(ErrorCode.NAME_UNKNOWN, f"repository {name} not known to registry", detail=name)
        return ApiError(
            ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference} unknown to repository {name}", detail=reference
        )

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        digest, media_type = self._resolve(name, reference)
        try:
            raw = self.blobs.get(digest)
        except PathNotFound:
            raise self._manifest_unknown(name, reference) from None
        return StoredManifest(raw, media_type, digest)

    def put_manifest(self, name: str, manifest: Manifest, tag: str | None, *, verify_references: bool = True) -> None:
        """Store ``manifest`` (already parsed and size-checked) in ``name``, tagged ``tag`` if given.

        MANIFEST_BLOB_UNKNOWN when a referenced blob or child manifest is not in the repository; a missing
        ``subject`` is fine (the referrers API allows it). A pull-through cache stores manifests before their
        blobs (``verify_references=False``): it fetches a blob when a client asks for it.
        """
        missing = (
            [d for d in manifest.referenced_blobs() if not self._link_stored(name, d)] if verify_references else []
        )
        if manifest.is_index and verify_references:
            missing += [c.digest for c in manifest.manifests if not self._manifest_stored(name, c.digest)]
        if missing:
            raise _references_unknown(name, missing)
        self._store_revision(name, manifest)
        if tag is not None:
            self.driver.put_content(paths.tag_link(name, tag), str(manifest.digest).encode())
        # Last, once the manifest is in place: a collector that marked the repository before it sees the token
        # change and marks it again, so what the manifest names (blobs it linked long ago, untagged children) stays.
        self.driver.put_content(paths.manifests_written(name), uuid.uuid4().hex.encode())
        if not self._manifest_stored(name, manifest.digest):
            # A delete of this manifest ran while it was written, after the tag scan that would have taken this
            # tag: the put, answered last, puts the manifest back, so the tag never names a missing one.
            self._store_revision(name, manifest)
        if verify_references:
            self._relink_swept(name, manifest, tag)

    def _store_revision(self, name: str, manifest: Manifest) -> None:
        """The manifest's bytes, its link and revision in ``name``, and its referrers entry."""
        digest = manifest.digest
        self.blobs.put(manifest.raw, digest)
        self.link_blob(name, digest)
        self.driver.put_content(paths.manifest_revision(name, digest), manifest.media_type.encode())
        if self.cache is not None:
            self.cache.remember_manifest(name, digest, manifest.media_type)
        if manifest.subject is not None:
            entry = referrer_descriptor(manifest)
            self.driver.put_content(
                paths.referrer_entry(name, manifest.subject.digest, digest), json.dumps(entry).encode()
            )

    def _relink_swept(self, name: str, manifest: Manifest, tag: str | None) -> None:
        """Links a collector removed while the manifest was being written are made again.

        A collector that re-checked the token before it changed may have swept a link the first check saw; the
        token now in place makes any later sweep see the manifest. A blob whose bytes are gone too cannot be
        linked again: then the tag is taken back and the put fails as for a blob never pushed.
        """
        gone: list[Digest] = []
        for digest in manifest.referenced_blobs():
            if self._link_stored(name, digest):
                continue
            if self.blobs.stored_size(digest) is None:
                gone.append(digest)
            else:
                self.link_blob(name, digest)
        if not gone:
            return
        if tag is not None:
            with contextlib.suppress(PathNotFound):
                if self.driver.get_content(paths.tag_link(name, tag)) == str(manifest.digest).encode():
                    self.driver.delete(f"{paths.tags_dir(name)}/{tag}")
        raise _references_unknown(name, gone)

    def tag_manifest(self, name: str, tag: str, digest: Digest) -> None:
        """Point ``tag`` of ``name`` at manifest ``digest``, which the repository holds already."""
        self.driver.put_content(paths.tag_link(name, tag), str(digest).encode())

    def delete_tag(self, name: str, tag: str) -> None:
        try:
            self.driver.delete(f"{paths.tags_dir(name)}/{tag}")
        except PathNotFound:
            raise self._manifest_unknown(name, tag) from None

    def delete_manifest(self, name: str, digest: Digest) -> None:
        """Remove a manifest from ``name``, with every tag pointing at it and its referrers entry."""
        stored = self.get_manifest(name, str(digest))
        self._forget_link(name, digest)
        self._untag(name, digest)
        try:
            parsed: Manifest | None = parse_manifest(stored.raw, stored.media_type)
        except ManifestError:
            parsed = None
        if parsed is not None and parsed.subject is not None:
            try:
                self.driver.delete(paths.referrer_entry(name, parsed.subject.digest, digest))
            except PathNotFound:
                pass
        self.driver.delete(paths.manifest_revision(name, digest).rsplit("/", 1)[0])
        try:
            self.driver.delete(paths.layer_link(name, digest))
        except PathNotFound:
            pass
        self._forget_link(name, digest)
        # A tag put meanwhile (a push of the same manifest under another tag) would name the removed revision.
        self._untag(name, digest)

    def _untag(self, name: str, digest: Digest) -> None:
        """Delete every tag of ``name`` pointing at ``digest``."""
        for tag in self._tag_names(name):
            try:
                if self.driver.get_content(paths.tag_link(name, tag)).decode() == str(digest):
                    self.driver.delete(f"{paths.tags_dir(name)}/{tag}")
            except PathNotFound:
                continue

    def _tag_names(self, name: str) -> Iterator[str]:
        try:
            yield from self.driver.list(paths.tags_dir(name))
        except PathNotFound:
            return

    def tags(self, name: str) -> list[str]:
        """The repository's tags, sorted; NAME_UNKNOWN if it does not exist."""
        if not self.repository_exists(name):
            raise ApiError(ErrorCode.NAME_UNKNOWN, f"repository {name} not known to registry", detail=name)
        found = []
        for tag in self._tag_names(name):
            try:
                self.driver.stat(paths.tag_link(name, tag))
            except PathNotFound:
                continue
            found.append(tag)
        return sorted(found)

    def tag_target(self, name: str, tag: str) -> tuple[Digest, float] | None:
        """The digest tag ``tag`` of ``name`` names and when it was last set (epoch seconds); None for no such tag.

        The web view lists a page of tags with it, reading only that page's links rather than every tag's.
        """
        link = paths.tag_link(name, tag)
        try:
            modified = self.driver.stat(link).modified
            digest = Digest.parse(self.driver.get_content(link).decode())
        except (PathNotFound, InvalidDigest, UnicodeDecodeError):
            return None
        return digest, modified

    def referrers(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject``, sorted by digest."""
        directory = paths.referrers_dir(name, subject)
        try:
            entries = self.driver.list(directory)
        except PathNotFound:
            return []
        found = []
        for entry in sorted(entries):
            try:
                found.append(json.loads(self.driver.get_content(f"{directory}/{entry}")))
            except (PathNotFound, ValueError):
                continue
        return [d for d in found if isinstance(d, dict)]


def referrer_descriptor(manifest: Manifest) -> dict[str, Any]:
    """The referrers API's descriptor of ``manifest``: mediaType, size, digest, artifactType, annotations."""
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "size": manifest.size,
        "digest": str(manifest.digest),
    }
    artifact_type = manifest.effective_artifact_type()
    if artifact_type:
        entry["artifactType"] = artifact_type
    if manifest.annotations:
        entry["annotations"] = dict(manifest.annotations)
    return entry


def _references_unknown(name: str, missing: list[Digest]) -> ApiError:
    """MANIFEST_BLOB_UNKNOWN for a manifest put whose ``missing`` blobs or children the repository lacks."""
    return ApiError(
        ErrorCode.MANIFEST_BLOB_UNKNOWN,
        f"manifest for {name} references {missing[0]}, unknown to the repository",
        detail=[str(d) for d in missing],
    )
