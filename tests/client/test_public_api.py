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
    assert list(params)[1:] == [
        "plain_http",
        "insecure",
        "ca_cert",
        "username",
        "password",
        "jobs",
        "progress",
        "timeout",
        "retries",
        "certs_d",
        "docker_config",
        "use_docker_config",
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in params.items() if name != "self")
    for method in ("probe", "pull", "push", "tags", "catalog", "inspect", "manifest", "delete"):
        assert inspect.iscoroutinefunction(getattr(Client, method))
    pull = inspect.signature(Client.pull).parameters
    assert {"format", "platform", "all_platforms", "protocol"} <= set(pull)
    push = inspect.signature(Client.push).parameters
    assert {"protocol", "mount_from", "chunk_size"} <= set(push)
