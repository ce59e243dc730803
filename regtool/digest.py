"""Content digests: a validated value type and an incremental verifier for streams.

Grammar from the OCI image-spec (descriptor.md): ``algorithm ":" encoded``. Only sha256 and sha512 are
computable here; other well-formed algorithms parse but cannot be verified.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regtool.errors import IntegrityError, InvalidDigest

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DIGEST_RE", "Digest", "DigestVerifier", "sha256_of"]

DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_ENCODED_RE = {"sha256": re.compile(r"^[a-f0-9]{64}\Z"), "sha512": re.compile(r"^[a-f0-9]{128}\Z")}
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class Digest:
    """A parsed, validated digest such as ``sha256:<64 hex>``."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate ``text``; raise InvalidDigest naming it when it is malformed."""
        if len(text) > 256 or not DIGEST_RE.match(text):
            raise InvalidDigest(f"invalid digest {text[:80]!r}: expected algorithm:hex")
        algorithm, _, encoded = text.partition(":")
        pattern = _ENCODED_RE.get(algorithm)
        if pattern is None:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r} in {text[:80]!r}")
        if not pattern.match(encoded):
            raise InvalidDigest(f"invalid {algorithm} digest {text[:80]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except InvalidDigest:
            return False
        return True

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, _HASHES[algorithm](data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @property
    def short(self) -> str:
        return f"{self.algorithm}:{self.encoded[:12]}"

    def verifier(self) -> DigestVerifier:
        return DigestVerifier(self.algorithm)


def sha256_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DigestVerifier:
    """Hashes a stream chunk by chunk and counts its bytes.

    hashlib releases the GIL on large buffers, so ``update`` may run in a worker thread.
    """

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        try:
            self._hash = _HASHES[algorithm]()
        except KeyError:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}") from None
        self.algorithm = algorithm
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def update_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.update(chunk)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())

    def verify(self, expected: Digest, expected_size: int | None = None, *, what: str = "blob") -> None:
        """Raise IntegrityError unless the bytes seen match ``expected`` (and ``expected_size``)."""
        if expected_size is not None and self.size != expected_size:
            raise IntegrityError(f"{what} {expected}: size mismatch: expected {expected_size} bytes, got {self.size}")
        actual = self.digest()
        if actual != expected:
            raise IntegrityError(f"{what} {expected}: digest mismatch: content hashes to {actual}")
