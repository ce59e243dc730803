"""regtool: move container images between registries and disk, over registry v1 and v2 / OCI.

>>> from regtool import Reference
>>> Reference.parse("localhost:5000/team/app:1.0").repository
'team/app'
"""

from __future__ import annotations

from regtool.__about__ import __version__
from regtool.client import Client
from regtool.client.progress import NullProgress, Progress
from regtool.client.results import InspectResult, LayerInfo, ProbeResult, PullResult, PushResult
from regtool.digest import Digest
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
