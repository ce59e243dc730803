"""The curated package surface: ``regtool.__all__`` is pinned, and the client signatures the CLI relies on."""

from __future__ import annotations

import inspect

import regtool
from regtool.client import Client


def test_all_is_pinned() -> None:
    assert regtool.__all__ == [
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
    for name in regtool.__all__:
        assert hasattr(regtool, name)


def test_client_signatures() -> None:
    params = inspect.signature(Client.__init__).parameters
    # The contract's parameters, in order; later issues may add keyword-only parameters with defaults after them.
    assert list(params)[1:10] == [
        "plain_http",
        "insecure",
        "ca_cert",
        "username",
        "password",
        "jobs",
        "progress",
        "timeout",
        "retries",
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in params.items() if name != "self")
    assert all(p.default is not inspect.Parameter.empty for name, p in params.items() if name != "self")
    for method in ("probe", "pull", "push", "tags", "catalog", "inspect", "manifest", "delete"):
        assert inspect.iscoroutinefunction(getattr(Client, method))
    pull = inspect.signature(Client.pull).parameters
    assert {"format", "platform", "all_platforms", "protocol"} <= set(pull)
    push = inspect.signature(Client.push).parameters
    assert {"protocol", "mount_from", "chunk_size"} <= set(push)
