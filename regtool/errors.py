"""The one exception tree of regtool.

Library code raises only these; the CLI maps each class to an exit code (``exit_code``) and prints
``str(error)`` as a one-line message. Messages name what was wrong and where (a reference, a URL, a
digest), and never carry credentials.

::

    RegtoolError                      exit 1   anything regtool could not do
    +-- UsageError                    exit 2   bad input from the user (options, files, paths)
    |   +-- InvalidReference          exit 2   an image reference that does not parse
    |   +-- InvalidDigest             exit 2   a digest string that does not parse
    |   +-- ImageFormatError          exit 2   a local OCI layout / docker-archive that is not valid
    +-- NotFoundError                 exit 3   repository, tag, manifest or blob absent
    +-- AuthError                     exit 4   401/403, or credentials that could not be used
    +-- IntegrityError                exit 5   bytes that do not match their digest or size
    +-- RegistryError                 exit 1   the registry answered with an error we cannot act on
    |   +-- ProtocolError             exit 1   the registry answered something that breaks the protocol
    +-- TransportError                exit 6   connection refused, DNS, TLS, timeouts
    +-- UnsupportedProtocolError      exit 7   the registry does not speak the protocol asked for / no registry
    +-- CancelledTransfer             exit 130 interrupted; what was transferred is kept for a resume
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CancelledTransfer",
    "ImageFormatError",
    "IntegrityError",
    "InvalidDigest",
    "InvalidReference",
    "NotFoundError",
    "ProtocolError",
    "RegistryError",
    "RegtoolError",
    "TransportError",
    "UnsupportedProtocolError",
    "UsageError",
]


class RegtoolError(Exception):
    """Base of every error regtool raises on purpose."""

    exit_code: int = 1


class UsageError(RegtoolError):
    exit_code = 2


class InvalidReference(UsageError):
    pass


class InvalidDigest(UsageError):
    pass


class ImageFormatError(UsageError):
    pass


class NotFoundError(RegtoolError):
    exit_code = 3


class AuthError(RegtoolError):
    exit_code = 4


class IntegrityError(RegtoolError):
    exit_code = 5


class RegistryError(RegtoolError):
    """An error response from a registry.

    ``status`` is the HTTP status, ``codes`` the error codes of the body's envelope (v2 ``errors[].code``;
    empty for v1 or a non-JSON body).
    """

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class ProtocolError(RegistryError):
    pass


class TransportError(RegtoolError):
    exit_code = 6


class UnsupportedProtocolError(RegtoolError):
    exit_code = 7


class CancelledTransfer(RegtoolError):
    exit_code = 130
