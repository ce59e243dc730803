"""TLS settings of the client, per registry host, as docker reads them.

- The system trust store is always used; ``ca_cert`` (``--ca-cert FILE``) adds CAs to it.
- ``<certs.d>/<host[:port]>/`` (docker's ``/etc/docker/certs.d``; ``REGTOOL_CERTS_D`` or ``certs_d`` moves it)
  adds, for that registry only, every ``*.crt`` as a CA and every ``*.cert`` + ``*.key`` pair as the client
  certificate for mutual TLS. A ``.cert`` without its ``.key`` (or the reverse) is an error, as in docker.
- ``insecure`` (``--insecure``) turns verification off for every host; ``allow_insecure(host)`` for one (a
  registries.conf entry with ``insecure = true``).

``TLSContexts`` builds one ``ssl.SSLContext`` per distinct configuration and caches it: hosts without a
certs.d directory share the default context (and so a connection pool).

Building a context is cheap; loading the system CA store into it is not (~20 ms of parsing every CA). So a
verifying context is a :class:`TrustOnDemand`: it loads the store only when a server first answers in TLS, just
before the certificate is checked (``connections.py`` sends the ClientHello, looks at the answer's first byte,
then calls ``load_trust``). A loopback registry on plain HTTP, asked over https and http at once, never makes a
client load it. A program about to connect to a far registry can have the store loaded ahead, in a thread, with
``warm_default_context()``.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from regtool.errors import UsageError

__all__ = ["CERTS_D_ENV", "DEFAULT_CERTS_D", "TLSContexts", "TLSSettings", "TrustOnDemand", "warm_default_context"]

CERTS_D_ENV = "REGTOOL_CERTS_D"
DEFAULT_CERTS_D = Path("/etc/docker/certs.d")


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """What the user asked for: ``insecure``, an extra ``ca_cert`` file, and the certs.d root (None: default)."""

    insecure: bool = False
    ca_cert: Path | None = None
    certs_d: Path | None = None

    def certs_root(self) -> Path:
        """``certs_d``, else ``$REGTOOL_CERTS_D``, else ``/etc/docker/certs.d``."""
        if self.certs_d is not None:
            return self.certs_d
        env = os.environ.get(CERTS_D_ENV)
        return Path(env) if env else DEFAULT_CERTS_D


@dataclass(frozen=True, slots=True)
class HostFiles:
    """The certs.d files of one host: CA certificates and (certificate, key) pairs."""

    cas: tuple[Path, ...] = ()
    client_pairs: tuple[tuple[Path, Path], ...] = ()


def host_files(directory: Path) -> HostFiles:
    """Read a certs.d host directory the way docker does (``registry.ReadCertsDirectory``)."""
    try:
        names = sorted(p.name for p in directory.iterdir() if p.is_file())
    except FileNotFoundError:
        return HostFiles()
    except NotADirectoryError:
        return HostFiles()
    except OSError as exc:
        raise UsageError(f"cannot read TLS directory {directory}: {exc.strerror or exc}") from None
    cas = tuple(directory / n for n in names if n.endswith(".crt"))
    pairs: list[tuple[Path, Path]] = []
    for name in names:
        if name.endswith(".cert"):
            key = name[: -len(".cert")] + ".key"
            if key not in names:
                raise UsageError(f"missing key {directory / key} for client certificate {directory / name}")
            pairs.append((directory / name, directory / key))
        elif name.endswith(".key"):
            cert = name[: -len(".key")] + ".cert"
            if cert not in names:
                raise UsageError(f"missing client certificate {directory / cert} for key {directory / name}")
    return HostFiles(cas, tuple(pairs))


class TLSContexts:
    """``ssl.SSLContext`` values per registry host (``host[:port]``), built once each. Thread-safe."""

    def __init__(self, settings: TLSSettings | None = None) -> None:
        self.settings = settings or TLSSettings()
        self._lock = threading.Lock()
        self._default: ssl.SSLContext | None = None
        self._by_files: dict[HostFiles, ssl.SSLContext] = {}
        self._by_host: dict[str, ssl.SSLContext] = {}
        self._insecure: ssl.SSLContext | None = None

    def default(self) -> ssl.SSLContext:
        """The context of hosts without a certs.d directory (and of plain-http fallbacks)."""
        with self._lock:
            if self._default is None:
                self._default = self._build(HostFiles())
            return self._default

    def for_host(self, host: str) -> ssl.SSLContext:
        """The context for ``host`` (``name`` or ``name:port``, as in an image reference)."""
        with self._lock:
            known = self._by_host.get(host)
        if known is not None:
            return known
        files = HostFiles() if self.settings.insecure else host_files(self.settings.certs_root() / host)
        if files == HostFiles():
            context = self.default()
        else:
            with self._lock:
                context = self._by_files.get(files) or self._build(files)
                self._by_files[files] = context
        with self._lock:
            self._by_host[host] = context
        return context

    def allow_insecure(self, host: str) -> None:
        """Skip certificate verification for ``host`` only (set before its first connection)."""
        with self._lock:
            if self._insecure is None:
                self._insecure = self._build(HostFiles(), insecure=True)
            self._by_host[host] = self._insecure

    def _build(self, files: HostFiles, *, insecure: bool = False) -> ssl.SSLContext:
        if insecure or self.settings.insecure:
            # Verifies nothing, so trusts nothing: no CA store to load.
            unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            unverified.check_hostname = False
            unverified.verify_mode = ssl.CERT_NONE
            return unverified
        context = _new_default_context()
        for ca in (*((self.settings.ca_cert,) if self.settings.ca_cert is not None else ()), *files.cas):
            try:
                context.load_verify_locations(cafile=str(ca))
            except FileNotFoundError:
                raise UsageError(f"CA certificate file not found: {ca}") from None
            except (ssl.SSLError, ValueError) as exc:
                raise UsageError(f"cannot load CA certificates from {ca}: {_reason(exc)}") from None
        for cert, key in files.client_pairs:
            try:
                context.load_cert_chain(str(cert), str(key))
            except (ssl.SSLError, OSError) as exc:
                raise UsageError(f"cannot load client certificate {cert} with key {key}: {_reason(exc)}") from None
        return context


class TrustOnDemand(ssl.SSLContext):
    """A verifying client context (what ``ssl.create_default_context()`` makes) whose system CA store is loaded by
    ``load_trust()``, once, when a connection first needs it. Thread-safe: a second caller waits for the first.

    OpenSSL consults the context's store when the server's certificate arrives, so the store may be loaded after
    a socket was wrapped with the context, as long as it is before the handshake reads the server's answer.
    """

    _lock: threading.Lock
    _trusted: bool

    @classmethod
    def create(cls) -> TrustOnDemand:
        context = cls(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname: as the default context
        context._lock = threading.Lock()
        context._trusted = False
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:  # as ssl.create_default_context does
            context.keylog_filename = keylog
        return context

    @property
    def trusted(self) -> bool:
        """Whether the system CA store is loaded (or the context verifies nothing)."""
        return self._trusted or self.verify_mode == ssl.CERT_NONE

    def load_trust(self) -> None:
        """Load the system CA store (``load_default_certs``), unless done already."""
        with self._lock:
            if not self._trusted:
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                self._trusted = True


# The default context warm_default_context() made, its store loading in a thread, until a TLSContexts takes it:
# each warmed context is used once.
_warmed: TrustOnDemand | None = None
_warming_lock = threading.Lock()


def warm_default_context() -> None:
    """Make the next default context now and load the system CA store into it in a background thread.

    A program that will soon connect to a registry over https (the CLI, at start-up, for a registry that is not on
    this machine) calls this first, so that the loading overlaps its imports instead of delaying the handshake;
    the next ``TLSContexts`` takes this context, and a handshake that needs the store before it is loaded waits
    for it. Calling it again before then does nothing.
    """
    global _warmed
    with _warming_lock:
        if _warmed is not None:
            return
        _warmed = TrustOnDemand.create()
        # Not a daemon: a run that ends quickly (a usage error) has the interpreter wait for the CA load at exit,
        # instead of finalizing (and OpenSSL cleaning up) under it, which crashed with SIGSEGV.
        threading.Thread(target=_load_quietly, args=(_warmed,), name="regtool-tls-warm-up").start()


def _load_quietly(context: TrustOnDemand) -> None:
    try:
        context.load_trust()
    except Exception:
        pass  # the store is then loaded where it is needed, and the error raised there as always


def _new_default_context() -> TrustOnDemand:
    """The warmed-up context when one was made, else a new one (its store loaded when first needed)."""
    global _warmed
    with _warming_lock:
        warmed, _warmed = _warmed, None
    return warmed if warmed is not None else TrustOnDemand.create()


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else (getattr(exc, "strerror", None) or type(exc).__name__)
