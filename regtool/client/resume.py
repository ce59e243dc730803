"""Push-side resume state: where each unfinished blob upload lives, kept on disk across runs.

A push records every upload session it opens (the session URL and how many bytes the registry acknowledged)
in a small JSON file per blob, keyed by registry + repository + digest, under the user's cache::

    $XDG_CACHE_HOME/regtool/uploads/<sha256 of "registry/repository@digest">.json    (default ~/.cache/...)

``REGTOOL_STATE_DIR`` overrides the directory. The next push of the same blob to the same repository asks the
registry how far the session got (``GET`` upload status, end-13: 204 with ``Range: 0-<last byte>``) and
continues with ``PATCH`` from there; a session the registry no longer knows is forgotten and a new one opened.
The file is removed once the blob is stored. Files are written atomically (temp file, fsync, rename); a file
that does not parse is ignored, so a crash mid-write costs at most a fresh upload.

One process at a time owns a blob's saved session: ``UploadStateStore.claim`` takes an exclusive ``flock`` on
``<key>.lock`` beside the state file, held while that blob uploads. Two pushes of the same image at once would
otherwise continue the same session, one closing it under the other. A process that finds the lock taken gets
a claim that reads and writes nothing: it opens a session of its own and leaves the saved one alone. The lock
goes with the process (a crash releases it); the lock file is removed when the claim is released.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from regtool.files import write_atomic

__all__ = ["UploadClaim", "UploadState", "UploadStateStore", "default_state_dir"]


def default_state_dir() -> Path:
    """``$REGTOOL_STATE_DIR``, else ``$XDG_CACHE_HOME/regtool/uploads`` (``~/.cache/regtool/uploads``)."""
    explicit = os.environ.get("REGTOOL_STATE_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "regtool" / "uploads"


@dataclass(frozen=True, slots=True)
class UploadState:
    """One unfinished upload: the session ``location`` (absolute URL) and the bytes acknowledged (``offset``)."""

    registry: str
    repository: str
    digest: str
    size: int
    location: str
    offset: int = 0
    updated: float = 0.0


class UploadStateStore:
    """The directory of upload states; every method is safe to call from several tasks (whole-file writes)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_state_dir()

    def path(self, registry: str, repository: str, digest: str) -> Path:
        key = hashlib.sha256(f"{registry}/{repository}@{digest}".encode()).hexdigest()
        return self.root / f"{key}.json"

    def load(self, registry: str, repository: str, digest: str) -> UploadState | None:
        """The saved state of this blob's upload, or None (absent, unreadable, or for another blob)."""
        try:
            doc = json.loads(self.path(registry, repository, digest).read_text())
            state = UploadState(
                registry=str(doc["registry"]),
                repository=str(doc["repository"]),
                digest=str(doc["digest"]),
                size=int(doc["size"]),
                location=str(doc["location"]),
                offset=int(doc["offset"]),
                updated=float(doc.get("updated", 0.0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (state.registry, state.repository, state.digest) != (registry, repository, digest):
            return None
        if not 0 <= state.offset <= state.size:
            return None
        return state

    def save(self, state: UploadState) -> None:
        """Write ``state`` atomically (a failure to write only loses the chance to resume)."""
        target = self.path(state.registry, state.repository, state.digest)
        stamped = UploadState(**{**asdict(state), "updated": time.time()})
        data = json.dumps(asdict(stamped), sort_keys=True).encode()
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
            # 0600: an upload URL may carry a registry's signed session state.
            write_atomic(target, data, mode=0o600)

    def lock_path(self, registry: str, repository: str, digest: str) -> Path:
        return self.path(registry, repository, digest).with_suffix(".lock")

    def claim(self, registry: str, repository: str, digest: str) -> UploadClaim:
        """Own this blob's saved state while it uploads; without the lock (another process has it) the claim
        reads and writes nothing. Never blocks. Release it with ``UploadClaim.release``."""
        return _claim(self, registry, repository, digest)

    def forget(self, registry: str, repository: str, digest: str) -> None:
        """Drop the state of this blob's upload (it was stored, or the session is gone)."""
        with contextlib.suppress(OSError):
            self.path(registry, repository, digest).unlink(missing_ok=True)


class UploadClaim:
    """One blob's saved upload state, as seen by the process that claimed it.

    ``owned`` is False when another process holds the blob's lock (or the lock could not be made): then ``load``
    finds nothing and ``save``/``forget`` do nothing. ``release`` (idempotent) removes the lock file and unlocks.
    """

    def __init__(
        self, store: UploadStateStore, registry: str, repository: str, digest: str, fd: int | None, *, owned: bool
    ) -> None:
        self.store = store
        self.registry = registry
        self.repository = repository
        self.digest = digest
        self._fd = fd
        self.owned = owned

    def load(self) -> UploadState | None:
        return self.store.load(self.registry, self.repository, self.digest) if self.owned else None

    def save(self, size: int, location: str, offset: int) -> None:
        if self.owned:
            self.store.save(UploadState(self.registry, self.repository, self.digest, size, location, offset))

    def forget(self) -> None:
        if self.owned:
            self.store.forget(self.registry, self.repository, self.digest)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        self.owned = False
        if fd is None:
            return
        # Unlink while still holding the lock: a process that opened the old file meanwhile sees it is gone
        # (``claim`` compares inodes) and starts over on a new one.
        with contextlib.suppress(OSError):
            self.store.lock_path(self.registry, self.repository, self.digest).unlink()
        os.close(fd)


def _claim(store: UploadStateStore, registry: str, repository: str, digest: str) -> UploadClaim:
    path = store.lock_path(registry, repository, digest)
    for _ in range(8):
        try:
            store.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            break
        try:
            current = os.stat(path)
        except OSError:
            current = None
        if current is not None and current.st_ino == os.fstat(fd).st_ino:
            return UploadClaim(store, registry, repository, digest, fd, owned=True)
        # The previous owner released (and removed) the file between our open and our lock: try again.
        os.close(fd)
    return UploadClaim(store, registry, repository, digest, None, owned=False)
