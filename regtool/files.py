"""Durable, atomic file writes: the one way regtool replaces a file that others may be reading.

``write_atomic(path, data)`` writes ``data`` to a new temporary file beside ``path`` (same directory, so the
rename cannot cross file systems), fsyncs it, renames it over ``path`` and fsyncs the directory. A reader sees
the old file or the new one, never a part of either, and after a crash (``kill -9``, power loss) one of the two
is there. ``fsync_dir`` is the last step on its own, for callers that rename files themselves (blob stores).

Used by the local image formats (``image/``), the server's filesystem driver, and the client's state files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, AttributeError):  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, replace: bool = True) -> bool:
    """Replace ``path`` with ``data`` atomically and durably; the file gets ``mode`` (0600 for secrets) less the
    umask, as every file regtool creates: a user whose umask keeps their files private keeps these private too.

    With ``replace=False`` an existing ``path`` is left as it is (a hard link puts the file in place only where
    none is, so two writers racing to create it cannot overwrite each other); returns whether it was written.
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)
            except FileExistsError:
                return False
            except OSError:
                # A file system without hard links: the check and the rename, with their instant between.
                if target.exists():
                    return False
                os.replace(temp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(target.parent)
    return True


def remove_orphans(parent: Path, prefix: str) -> None:
    """Remove the entries of ``parent`` named ``<prefix><pid>-...`` whose process is gone: the scratch a killed
    run of this program left (its runs name their scratch so). Best effort: an entry it cannot judge or remove
    stays."""
    try:
        candidates = list(parent.glob(f"{prefix}*-*"))
    except OSError:
        return
    for candidate in candidates:
        pid_text = candidate.name.removeprefix(prefix).split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    candidate.unlink()
        except OSError:
            continue  # alive, under another user
