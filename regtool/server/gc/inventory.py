"""What the store holds, read through the driver alone: each repository's tags, manifest revisions, blob links
and referrers entries, the blobs, and the repositories an upload is open for (v1 images: ``gc/v1.py``).

Entries that cannot be read (a link removed while it is listed, a file that is not a digest) are left out: the
collector never removes what it did not see, and a listing is only a snapshot of a store others write to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from regtool.digest import Digest
from regtool.errors import InvalidDigest
from regtool.server.storage import paths
from regtool.server.storage.driver import FileInfo, PathNotFound, StorageDriver

__all__ = [
    "ReferrerEntry",
    "RepositoryInventory",
    "Revision",
    "blob_directories",
    "children",
    "manifests_token",
    "read_repository",
    "revision_dir",
    "stored_blobs",
    "uploading_repositories",
]


@dataclass(frozen=True, slots=True)
class Revision:
    """A manifest revision link: the manifest's media type and when the link was written."""

    media_type: str
    modified: float


@dataclass(frozen=True, slots=True)
class ReferrerEntry:
    """``_referrers/<alg>/<subject>/<alg>-<hex>``: ``referrer`` declares ``subject`` as its subject."""

    subject: Digest
    referrer: Digest
    path: str


@dataclass
class RepositoryInventory:
    name: str
    tags: dict[str, Digest] = field(default_factory=dict)
    revisions: dict[Digest, Revision] = field(default_factory=dict)
    links: dict[Digest, float] = field(default_factory=dict)  # digest -> when the link was written
    referrers: list[ReferrerEntry] = field(default_factory=list)
    written: bytes | None = None  # the repository's manifest write token, read before the rest

    @property
    def empty(self) -> bool:
        return not (self.tags or self.revisions or self.links or self.referrers)


def children(driver: StorageDriver, path: str) -> list[str]:
    """The names in directory ``path``, sorted; none when it is absent."""
    try:
        return sorted(driver.list(path))
    except PathNotFound:
        return []


def _digest(algorithm: str, encoded: str) -> Digest | None:
    try:
        return Digest.parse(f"{algorithm}:{encoded}")
    except InvalidDigest:
        return None


def _digests_under(driver: StorageDriver, base: str) -> Iterator[Digest]:
    """Digests laid out as ``base/<alg>/<hex>`` (revisions, layer links)."""
    for algorithm in children(driver, base):
        for encoded in children(driver, f"{base}/{algorithm}"):
            digest = _digest(algorithm, encoded)
            if digest is not None:
                yield digest


def _stat(driver: StorageDriver, path: str) -> FileInfo | None:
    try:
        return driver.stat(path)
    except PathNotFound:
        return None


def revision_dir(name: str, digest: Digest) -> str:
    return paths.manifest_revision(name, digest).rsplit("/", 1)[0]


def manifests_token(driver: StorageDriver, name: str) -> bytes | None:
    """The token the repository's last manifest write left (``Registry.put_manifest``), None before the first."""
    try:
        return driver.get_content(paths.manifests_written(name))
    except PathNotFound:
        return None


def read_repository(driver: StorageDriver, name: str) -> RepositoryInventory:
    # The token first: a manifest written while the rest is read changes it, and the collector reads again.
    inventory = RepositoryInventory(name, written=manifests_token(driver, name))
    for tag in children(driver, paths.tags_dir(name)):
        try:
            inventory.tags[tag] = Digest.parse(driver.get_content(paths.tag_link(name, tag)).decode())
        except (PathNotFound, InvalidDigest, UnicodeDecodeError):
            continue
    # Referrers entries before the revisions: a manifest put writes its revision, then its entry, so every entry
    # read here whose revision was already written is found among the revisions read next.
    referrers = f"{paths.repository_dir(name)}/_referrers"
    for subject in _digests_under(driver, referrers):
        directory = paths.referrers_dir(name, subject)
        for entry in children(driver, directory):
            algorithm, _, encoded = entry.partition("-")
            referrer = _digest(algorithm, encoded)
            if referrer is not None:
                inventory.referrers.append(ReferrerEntry(subject, referrer, f"{directory}/{entry}"))
    revisions = f"{paths.repository_dir(name)}/_manifests/revisions"
    for digest in _digests_under(driver, revisions):
        link = paths.manifest_revision(name, digest)
        info = _stat(driver, link)
        try:
            media_type = driver.get_content(link).decode()
        except (PathNotFound, UnicodeDecodeError):
            continue
        if info is not None:
            inventory.revisions[digest] = Revision(media_type, info.modified)
    for digest in _digests_under(driver, paths.layers_dir(name)):
        info = _stat(driver, paths.layer_link(name, digest))
        if info is not None:
            inventory.links[digest] = info.modified
    return inventory


def uploading_repositories(driver: StorageDriver) -> set[str]:
    """The repositories with an upload session open (``uploads/<id>/info`` names the repository)."""
    names: set[str] = set()
    for upload_id in children(driver, paths.UPLOADS):
        if not paths.UPLOAD_ID_RE.match(upload_id):
            continue
        try:
            info = json.loads(driver.get_content(paths.upload_info(upload_id)))
        except (PathNotFound, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("name"), str):
            names.add(info["name"])
    return names


def blob_directories(driver: StorageDriver) -> Iterator[tuple[Digest, FileInfo | None]]:
    """Every blob directory's digest and its data file, None for a directory without one (a re-use marker
    written as its blob was removed)."""
    for algorithm in children(driver, paths.BLOBS):
        for prefix in children(driver, f"{paths.BLOBS}/{algorithm}"):
            for encoded in children(driver, f"{paths.BLOBS}/{algorithm}/{prefix}"):
                digest = _digest(algorithm, encoded)
                if digest is None:
                    continue
                info = _stat(driver, paths.blob_data(digest))
                yield digest, info if info is not None and not info.is_dir else None


def stored_blobs(driver: StorageDriver) -> Iterator[tuple[Digest, FileInfo]]:
    """Every blob's digest and its data file (``blobs/<alg>/<hex[:2]>/<hex>/data``)."""
    for digest, info in blob_directories(driver):
        if info is not None:
            yield digest, info
