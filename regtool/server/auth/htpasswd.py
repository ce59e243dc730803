"""An htpasswd file as distribution reads it: ``user:bcrypt-hash`` lines, nothing else.

distribution (``registry/auth/htpasswd``) accepts only bcrypt entries (``$2y$``, ``$2a$``, ``$2b$``, as
``htpasswd -B`` writes them); blank lines and ``#`` comments are skipped, and a user listed twice keeps the
first entry. Checking a password costs one bcrypt run (tens of milliseconds at cost 10), so successful checks
are remembered under a keyed digest of the password; a push of many blobs does not pay it per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from regtool.errors import UsageError

__all__ = ["Htpasswd", "HtpasswdEntry", "hash_password"]

_BCRYPT_PREFIXES = ("$2y$", "$2a$", "$2b$")
_CACHE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class HtpasswdEntry:
    """One user and their bcrypt hash. ``repr`` leaves the hash out."""

    user: str
    hashed: bytes

    def __repr__(self) -> str:
        return f"HtpasswdEntry(user={self.user!r})"


def hash_password(password: str, *, rounds: int = 10) -> str:
    """A bcrypt hash in htpasswd's ``$2y$`` spelling (tests and setup scripts write files with it)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode("ascii")
    return "$2y$" + hashed[4:]


class Htpasswd:
    """The users of one htpasswd file, loaded once; ``check`` is safe to call from several threads."""

    def __init__(self, entries: dict[str, HtpasswdEntry], source: str = "htpasswd") -> None:
        self.source = source
        self._entries = entries
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()
        # Unknown users are checked against this, at the cost of a real entry, so timing does not tell who exists.
        cost = next(iter(entries.values())).hashed[4:6].decode("ascii", "replace") if entries else "10"
        rounds = int(cost) if cost.isdigit() and 4 <= int(cost) <= 31 else 10
        self._dummy = bcrypt.hashpw(b"regtool", bcrypt.gensalt(rounds=rounds))

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        """Parse ``path``; UsageError (naming the file and line, never a hash) when it cannot be used."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read htpasswd file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"htpasswd file {path} is not UTF-8 text") from None
        entries: dict[str, HtpasswdEntry] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise UsageError(f"htpasswd file {path}, line {number}: expected user:hash")
            if not hashed.startswith(_BCRYPT_PREFIXES):
                raise UsageError(
                    f"htpasswd file {path}, line {number}: the entry of {user!r} is not bcrypt (use htpasswd -B)"
                )
            entries.setdefault(user, HtpasswdEntry(user, hashed.encode("ascii", "replace")))
        if not entries:
            raise UsageError(f"htpasswd file {path} lists no users")
        return cls(entries, str(path))

    @property
    def users(self) -> frozenset[str]:
        return frozenset(self._entries)

    def check(self, user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s. Blocking (bcrypt); run it in a worker thread."""
        entry = self._entries.get(user)
        if entry is None:
            bcrypt.checkpw(b"x", self._dummy)
            return False
        mark = hmac.new(self._key, f"{user}\x00{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, mark):
            return True
        hashed = b"$2b$" + entry.hashed[4:]
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._verified) >= _CACHE_LIMIT:
                    self._verified.clear()
                self._verified[user] = mark
        return ok
