"""v1 repositories a push never tagged: what a v1 push cut short leaves in ``v1/repositories/``.

A v1 push starts by PUTting the repository's image list (``_index_images``) and ends with its tags; one stopped
in between (the client gone, the server killed) leaves a repository that names images and has no tag, no
metadata and never had any: search lists it, and its image list names images the collector removes. A
repository that was tagged once keeps its ``json`` (the last tag PUT's metadata) after its tags are deleted, and
stays, as docker-registry kept it; so does one with a tag, or with a file written within the grace period (a
push under way). Only the repository's own files go, each read again right before: a tag written meanwhile, or
a nested repository, is never touched, and the directory goes only once it is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from regtool.server.gc.inventory import children
from regtool.server.gc.report import Removal
from regtool.server.storage import paths
from regtool.server.storage.driver import PathNotFound, StorageDriver
from regtool.server.storage.v1images import unescape_component

__all__ = ["sweep_v1_repositories"]

_REPOSITORIES = f"{paths.V1}/repositories"
# Written by a push's first request (the image list) and by a properties PUT: all an untagged repository has.
_PUSH_FILES = ("_index_images", "_private")


@dataclass(frozen=True, slots=True)
class _Directory:
    path: str
    name: str  # the repository's name, ``namespace/repo``
    tagged: bool  # a tag, or the metadata a tag PUT leaves: the repository is kept
    files: dict[str, float]  # file name -> when written (of an untagged repository)
    nested: tuple[str, ...]  # directories inside: nested repositories

    @property
    def never_tagged(self) -> bool:
        return not self.tagged and bool(self.files) and all(name in _PUSH_FILES for name in self.files)


def _read(driver: StorageDriver, path: str, name: str) -> _Directory | None:
    entries = children(driver, path)
    # Names alone tell a tagged repository: its files are not stat-ed (one request each on object storage),
    # only what may be a nested repository (a "_" name that is not one of the repository's own files).
    tagged = any(entry == "json" or entry.startswith("tag_") for entry in entries)
    files: dict[str, float] = {}
    nested: list[str] = []
    for entry in entries:
        if entry == "json" or entry.startswith("tag_") or (tagged and entry in _PUSH_FILES):
            continue
        try:
            info = driver.stat(f"{path}/{entry}")
        except PathNotFound:
            continue
        if info.is_dir:
            nested.append(entry)
        else:
            files[entry] = info.modified
    if not entries:
        return None
    return _Directory(path, name, tagged, files, tuple(nested))


def _repositories(driver: StorageDriver) -> Iterator[_Directory]:
    """Every v1 repository (``namespace/repo`` and any nested below it), parents before what they hold."""
    pending = [
        (f"{_REPOSITORIES}/{namespace}/{repo}", f"{unescape_component(namespace)}/{unescape_component(repo)}")
        for namespace in children(driver, _REPOSITORIES)
        for repo in children(driver, f"{_REPOSITORIES}/{namespace}")
    ]
    while pending:
        path, name = pending.pop(0)
        directory = _read(driver, path, name)
        if directory is None:
            continue
        yield directory
        pending.extend((f"{path}/{n}", f"{name}/{unescape_component(n)}") for n in directory.nested)


def _old(directory: _Directory, cutoff: float) -> bool:
    return all(modified <= cutoff for modified in directory.files.values())


def sweep_v1_repositories(
    driver: StorageDriver, *, cutoff: float, dry_run: bool, removed: Callable[[Removal], None]
) -> None:
    """Remove the repositories a push never tagged whose files are all older than ``cutoff``."""
    for directory in list(_repositories(driver)):
        if not directory.never_tagged or not _old(directory, cutoff):
            continue
        if not dry_run:
            again = _read(driver, directory.path, directory.name)
            if again is None or not again.never_tagged or not _old(again, cutoff):
                continue  # a push came back to it
            for name in again.files:
                try:
                    driver.delete(f"{directory.path}/{name}")
                except PathNotFound:
                    continue
            _remove_if_empty(driver, directory.path)
        removed(Removal("v1-repository", directory.name))


def _remove_if_empty(driver: StorageDriver, path: str) -> None:
    # On a filesystem an emptied directory stays (search would list it); on object storage it is gone already.
    # Its namespace goes too when nothing else is in it.
    for directory in (path, path.rsplit("/", 1)[0]):
        if directory == _REPOSITORIES or children(driver, directory):
            return
        try:
            driver.delete(directory)
        except PathNotFound:
            pass
