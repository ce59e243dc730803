"""TCP connections opened before the client exists, parked until its pool dials that host and port.

A command line that names a far registry spends most of its start-up importing before it sends anything, and then
pays a handshake round trip for its first connection. The CLI can have the connections opened while it imports
(``dial_and_park``, in a thread of its own); :class:`~regtool.client.net.connections.ConnectionPool` then takes a
parked socket (``take``) where it would have dialled, and does TLS over it as over any other. Each parked socket
is used once. One that the server has closed meanwhile is discarded and the pool dials as usual; the ones a run
never uses are closed at exit.

Only the standard library is imported here: this runs before the command's own imports.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import select
import socket
import sys
import threading
import time
import types
from collections.abc import Mapping

__all__ = ["dial_and_park", "dropped", "parked_count", "release_all", "take"]

_Key = tuple[str, str, int]  # scheme, host, port: the pool's origin

_changed = threading.Condition()
_parked: dict[_Key, list[socket.socket]] = {}
# Origins being dialled right now: a pool asking for one of them waits for the dial already on its way, which
# started earlier than one of its own would.
_dialling: dict[_Key, int] = {}
_exit_hook_set = False


def dial_and_park(host: str, port: int, counts: Mapping[str, int], timeout: float) -> int:
    """Open connections to ``host:port`` at once (from this one thread) and park ``counts[scheme]`` of them for
    each scheme (the pool's connections of that scheme take them, TLS or not), the schemes served in the order
    given. Returns how many connected within ``timeout`` seconds. Failures are dropped: the pool dials on its own
    and reports what went wrong then."""
    global _exit_hook_set
    keys = [(scheme, host.lower(), port) for scheme in counts]
    with _changed:
        for key in keys:
            _dialling[key] = _dialling.get(key, 0) + 1
        if not _exit_hook_set:
            atexit.register(release_all)
            _exit_hook_set = True
    opened: list[socket.socket] = []
    try:
        opened = _connect_many(host, port, sum(counts.values()), timeout)
    except OSError:
        pass
    finally:
        connected = len(opened)
        with _changed:
            for key, count in zip(keys, counts.values(), strict=True):
                _parked.setdefault(key, []).extend(opened[:count])
                del opened[:count]
                _dialling[key] -= 1
                if not _dialling[key]:
                    del _dialling[key]
            _changed.notify_all()
    return connected


def _connect_many(host: str, port: int, count: int, timeout: float) -> list[socket.socket]:
    """Non-blocking connects to the first address of ``host`` that accepts any, as ``socket.create_connection``
    tries them in order."""
    deadline = time.monotonic() + timeout
    # An ASCII name as bytes: the socket module would encode a str with the idna codec, an import of its own.
    name = host.encode("ascii") if host.isascii() else host
    for family, kind, proto, _, address in socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM):
        pending: dict[int, socket.socket] = {}
        try:
            for _ in range(count):
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                if sock.connect_ex(address) not in {0, errno.EINPROGRESS}:
                    sock.close()
                    continue
                pending[sock.fileno()] = sock
        except OSError:  # out of descriptors, say: the ones made are closed, and nothing is parked
            for sock in pending.values():
                sock.close()
            raise
        connected = _await_connects(pending, deadline)
        if connected:
            return connected
        if time.monotonic() >= deadline:
            break
    return []


def _await_connects(pending: dict[int, socket.socket], deadline: float) -> list[socket.socket]:
    connected: list[socket.socket] = []
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            sock = pending.pop(fd)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                sock.setblocking(True)
                connected.append(sock)
            else:
                sock.close()
    for sock in pending.values():  # not connected in time
        sock.close()
    return connected


def take(scheme: str, host: str, port: int, timeout: float) -> socket.socket | None:
    """A parked connection for ``scheme`` to ``host:port`` that the server has not closed, else None (the caller
    dials). A dial for it still under way is waited for, up to ``timeout`` seconds."""
    key = (scheme, host.lower(), port)
    deadline = time.monotonic() + timeout
    with _changed:
        while key in _dialling:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            _changed.wait(left)
        socks = _parked.get(key)
        while socks:
            sock = socks.pop(0)
            if not dropped(sock):
                return sock
            sock.close()
    return None


def dropped(sock: socket.socket) -> bool:
    """A connection nothing was asked on that reads as ready: the server closed it (or sent something unasked),
    so it must not carry a request. A TLS connection that reads as ready may only hold what a TLS 1.3 server
    sends after the handshake (its session tickets): those are read here, and the connection is kept."""
    poller = select.poll()  # not select(): it refuses descriptors above FD_SETSIZE, which a busy process has
    try:
        poller.register(sock, select.POLLIN | select.POLLPRI)
        ready = poller.poll(0)
    except (OSError, ValueError):
        return True
    if not ready:
        return False
    ssl = sys.modules.get("ssl")  # not imported here: a socket can be TLS only once something loaded ssl
    return not (ssl is not None and isinstance(sock, ssl.SSLSocket) and _only_tls_records(sock, ssl))


def _only_tls_records(sock: socket.socket, ssl: types.ModuleType) -> bool:
    """Whether what ``sock`` holds is TLS records alone (no data, no close), read now without waiting."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1)  # data the server sent unasked, or b"" for its close: either way it is not reused
    except ssl.SSLWantReadError:
        return True
    except (OSError, ValueError):
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)
    return False


def parked_count(scheme: str, host: str, port: int) -> int:
    """How many connections for ``scheme`` to ``host:port`` are parked now."""
    with _changed:
        return len(_parked.get((scheme, host.lower(), port), ()))


def release_all() -> None:
    """Close every parked connection (at exit: the ones the run did not need)."""
    with _changed:
        socks = [sock for parked in _parked.values() for sock in parked]
        _parked.clear()
    for sock in socks:
        sock.close()
