"""regtool: move container images between registries and disk, over registry v1 and v2 / OCI.

>>> from regtool import Reference
>>> Reference.parse("localhost:5000/team/app:1.0").repository
'team/app'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regtool.__about__ import __version__
from regtool.errors import (
    AuthError,
    CancelledTransfer,
    ImageFormatError,
    IntegrityError,
    InvalidDigest,
    InvalidReference,
    NotFoundError,
    ProtocolError,
    RegistryError,
    RegtoolError,
    TransportError,
    UnsupportedProtocolError,
    UsageError,
)
from regtool.lazy import import_on_first_use

if TYPE_CHECKING:
    from regtool.client import Client
    from regtool.client.progress import NullProgress, Progress
    from regtool.client.results import InspectResult, LayerInfo, ProbeResult, PullResult, PushResult
    from regtool.digest import Digest
    from regtool.manifest import Platform
    from regtool.reference import Reference

__all__ = [
    "AuthError",
    "CancelledTransfer",
    "Client",
    "Digest",
    "ImageFormatError",
    "InspectResult",
    "IntegrityError",
    "InvalidDigest",
    "InvalidReference",
    "LayerInfo",
    "NotFoundError",
    "NullProgress",
    "Platform",
    "ProbeResult",
    "Progress",
    "ProtocolError",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryError",
    "RegtoolError",
    "TransportError",
    "UnsupportedProtocolError",
    "UsageError",
    "__version__",
]


# The client (and httpx under it) is imported on first use, so that ``import regtool.<anything>`` (the CLI's
# ``--version`` and ``--help``, ``regtool serve``) does not pay for it; the value classes too (typing,
# dataclasses, hashlib), which ``--version`` does not need.
_LAZY = {
    "Client": "regtool.client",
    "Digest": "regtool.digest",
    "Platform": "regtool.manifest",
    "Reference": "regtool.reference",
    "NullProgress": "regtool.client.progress",
    "Progress": "regtool.client.progress",
    "InspectResult": "regtool.client.results",
    "LayerInfo": "regtool.client.results",
    "ProbeResult": "regtool.client.results",
    "PullResult": "regtool.client.results",
    "PushResult": "regtool.client.results",
}


def __getattr__(name: str) -> Any:
    return import_on_first_use(__name__, name, _LAZY)
