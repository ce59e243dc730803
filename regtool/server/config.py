"""The server's configuration: one frozen value, built by the CLI (or a test) and handed to ``create_app``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from regtool.errors import UsageError

__all__ = [
    "DEFAULT_MAX_MANIFEST_BYTES",
    "S3_MIN_PART_SIZE",
    "ProxyRemote",
    "RequestEvent",
    "RequestObserver",
    "S3Settings",
    "ServerConfig",
    "default_root",
]

DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
StorageKind = Literal["filesystem", "inmemory", "s3"]
# Every part of an S3 multipart upload but the last must be at least this long.
S3_MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the ``s3`` driver keeps the registry: distribution's ``storage.s3`` keys, by the same meaning.

    ``endpoint`` is ``regionendpoint`` (None: AWS itself); keys left None come from the standard AWS environment
    (``AWS_ACCESS_KEY_ID`` ...); ``chunk_size`` is the multipart part size (S3's minimum is 5 MiB).
    """

    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None
    root_directory: str = ""
    force_path_style: bool = False
    chunk_size: int = 10 * 1024 * 1024
    access_key: str | None = None
    secret_key: str | None = None
    secure: bool = True
    skip_verify: bool = False

    def __post_init__(self) -> None:
        if not self.bucket:
            raise UsageError("s3 storage needs a bucket")
        if self.chunk_size < S3_MIN_PART_SIZE:
            raise UsageError(
                f"s3 chunk size {self.chunk_size} is below S3's minimum part size {S3_MIN_PART_SIZE} (5 MiB)"
            )


@dataclass(frozen=True, slots=True)
class ProxyRemote:
    """One upstream of the pull-through cache: ``namespace`` is the registry host containerd names with
    ``?ns=`` (None: the upstream for requests that name none); credentials None means anonymous."""

    url: str
    namespace: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One finished request, as the request observer sees it.

    ``start``/``end`` are ``time.monotonic()`` values taken when the request arrived and when its last body byte
    was sent; ``sent``/``received`` count body bytes.
    """

    method: str
    path: str
    query: str
    status: int
    start: float
    end: float
    sent: int
    received: int

    @property
    def duration(self) -> float:
        return self.end - self.start


RequestObserver = Callable[[RequestEvent], None]


def default_root() -> Path:
    """The per-user data directory for ``--root``: ``$XDG_DATA_HOME/regtool/registry`` (or ~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "regtool" / "registry"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``create_app`` needs.

    ``storage="inmemory"`` ignores ``root``. ``latency_ms`` delays every request (to show what round trips cost);
    ``observer`` is called once per finished request (tests use it to count requests and check overlap).
    ``upload_purge_age``: upload sessions idle for longer (seconds) are purged (``purge.py``); None keeps them.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    root: Path | None = None
    storage: StorageKind = "filesystem"
    read_only: bool = False
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES
    enable_v1: bool = True
    enable_v2: bool = True
    latency_ms: float = 0.0
    # A request body (a blob chunk) that sends nothing for this long is cut off, as nginx's client_body_timeout
    # does: its upload keeps what arrived, and the session is free for the client's resume.
    body_timeout: float = 60.0
    upload_purge_age: float | None = None
    # How often the purge looks (distribution's uploadpurging.interval); None: half the age, at most 10 minutes.
    upload_purge_interval: float | None = None
    access_log: bool = True
    observer: RequestObserver | None = None
    # Authentication and TLS (regtool/server/auth/setup.py reads these). ``htpasswd``: Basic auth, or
    # the users of the token endpoint with ``token_auth``; ``tls_cert``/``tls_key``: PEM files for HTTPS.
    htpasswd: Path | None = None
    token_auth: bool = False
    anonymous_pull: bool = False
    auth_acl: Path | None = None
    token_realm: str | None = None
    token_service: str = "regtool"
    token_issuer: str = "regtool"
    token_ttl: int = 300
    token_key: Path | None = None
    token_cert: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The web view (regtool/server/web/): HTML pages for browsers at ``web_prefix`` (empty: at ``/``).
    web: bool = True
    web_prefix: str = ""
    # Deletes of manifests and blobs (distribution's storage.delete.enabled); refused with UNSUPPORTED when off.
    delete_enabled: bool = True
    # Object storage (storage="s3") and whether blob GETs/HEADs answer 307 to a presigned URL on the store.
    s3: S3Settings | None = None
    storage_redirect: bool = True
    # The blob-descriptor cache shared by instances (None: uncached).
    redis_addr: str | None = None
    redis_password: str | None = None
    redis_db: int = 0
    # Pull-through cache: one upstream per namespace; empty means a plain registry.
    proxy_remotes: tuple[ProxyRemote, ...] = ()
    proxy_ttl: float = 168 * 3600.0
    proxy_max_size: int | None = None
    # The online garbage collector: every gc_interval seconds (None: never), sparing what is younger than gc_delay;
    # untagged manifests no live manifest needs go too with gc_delete_untagged (serve gc --delete-untagged).
    gc_interval: float | None = None
    gc_delay: float = 3600.0
    gc_delete_untagged: bool = False
    # Prometheus text at /metrics.
    metrics: bool = True
    # The health endpoint for balancers: storage checked every interval, unhealthy after threshold failures.
    health_storage_interval: float = 10.0
    health_storage_threshold: int = 3
    log_level: str = "info"
    # A second listener (distribution's http.debug.addr) for /metrics and /debug/health, kept off the balancer.
    debug_addr: str | None = None
    # Sent with every response the handler did not give them (distribution's http.headers).
    response_headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.upload_purge_age is not None and self.upload_purge_age < 0:
            raise UsageError("upload_purge_age must not be negative")
        if self.upload_purge_interval is not None and not self.upload_purge_interval > 0:
            raise UsageError("upload_purge_interval must be more than 0 seconds")
        if self.gc_interval is not None and not self.gc_interval > 0:
            raise UsageError("gc_interval must be more than 0 seconds")
        if not self.gc_delay >= 0:
            raise UsageError("gc_delay must not be negative")
        if self.gc_delete_untagged and self.gc_interval is None:
            raise UsageError(
                "gc_delete_untagged needs gc_interval (serve --gc-interval, or storage.maintenance.gc.interval)"
            )
        if self.storage not in ("filesystem", "inmemory", "s3"):
            raise UsageError(f"unknown storage {self.storage!r}: expected filesystem, inmemory or s3")
        if (self.storage == "s3") != (self.s3 is not None):
            raise UsageError("s3 storage needs its settings (a bucket), and only s3 storage takes them")
        if self.storage == "filesystem" and self.root is None:
            raise UsageError("filesystem storage needs a root directory")
        if self.max_manifest_bytes <= 0:
            raise UsageError("max_manifest_bytes must be positive")
        if self.latency_ms < 0:
            raise UsageError("latency_ms must not be negative")
        if not self.proxy_ttl > 0:
            raise UsageError("proxy_ttl must be more than 0 seconds")
        if self.proxy_max_size is not None and self.proxy_max_size <= 0:
            raise UsageError("proxy_max_size must be more than 0 bytes")
        if len({remote.namespace for remote in self.proxy_remotes}) != len(self.proxy_remotes):
            raise UsageError("give one proxy remote per namespace (and at most one without a namespace)")
        # Auth and TLS options that only make sense together.
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("give both a TLS certificate and its key, or neither")
        if self.token_key is not None and self.token_cert is None:
            raise UsageError("a token signing key needs its certificate (the chain verifiers trust)")
        if not self.token_auth and (self.token_cert is not None or self.token_key is not None or self.token_realm):
            # Ignoring them would start a registry without any authentication where its operator asked for some.
            raise UsageError("the token options (certificate, key, realm) need token auth (--token-auth)")
        # A certificate alone is distribution's rootcertbundle: tokens come from an external token server.
        external_tokens = self.token_cert is not None and self.token_key is None
        if self.token_auth and external_tokens and not self.token_realm:
            raise UsageError("tokens from an external token server need its realm (the URL clients get tokens from)")
        if self.htpasswd is None and not self.token_auth and (self.anonymous_pull or self.auth_acl is not None):
            raise UsageError("anonymous pull and an ACL need authentication (an htpasswd file or token auth)")
        if self.token_auth and not external_tokens and self.htpasswd is None and not self.anonymous_pull:
            # Without users nobody could get a token: the registry would start and then refuse every request.
            raise UsageError("token auth needs users (an htpasswd file) unless anonymous pull is allowed")
        if self.token_ttl < 60:
            raise UsageError("token_ttl must be at least 60 seconds")
        if self.redis_addr is not None:
            from regtool.server.cache.rediscache import parse_redis_addr

            parse_redis_addr(self.redis_addr)
        if self.debug_addr is not None:
            from regtool.reference import split_host_port

            debug_host, debug_port = split_host_port(self.debug_addr)
            if not debug_host or debug_port is None or debug_port > 65535:
                raise UsageError(f"debug address {self.debug_addr!r} must be HOST:PORT")
        for name, value in self.response_headers:
            if not name or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name):
                raise UsageError(f"response header name {name!r} is not an HTTP token")
            if any(c in value for c in "\r\n\0"):
                raise UsageError(f"response header {name} holds a line break")
        if self.redis_db < 0:
            raise UsageError(f"redis_db must not be negative, not {self.redis_db}")
        if self.health_storage_interval <= 0 or self.health_storage_threshold < 1:
            raise UsageError("the storage health check needs a positive interval and a threshold of at least 1")
        parts = self.web_prefix.split("/")
        if self.web_prefix and (
            parts[0]
            or not all(part and all(c.isascii() and (c.isalnum() or c in "._~-") for c in part) for part in parts[1:])
            or parts[1] in {"v1", "v2", "token", "_ping"}
        ):
            # The pages must never shadow the registry APIs or the token endpoint.
            raise UsageError(f"web prefix {self.web_prefix!r} must look like /ui and not be under /v1, /v2 or /token")
