"""A loopback TCP relay that counts the connections it accepts and can cut the first ones, for tests of where a
client's connections come from (opened ahead, reused, dialled fresh).

    with run_connection_relay(serve.port, cut_first=1, cut_at="request") as relay:
        ...  # the client talks to relay.host as to the registry
        relay.accepted                 # connections accepted so far
        relay.first_bytes(0)           # what the first connection carried first (b"" when nothing)

``cut_at="accept"`` closes each of the first ``cut_first`` connections as soon as it is accepted (a server that
dropped an idle connection); ``cut_at="request"`` closes it when its first bytes arrive, unanswered (a server that
closed it just as the request went out). Every other connection is relayed both ways to 127.0.0.1:``upstream``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["ConnectionRelay", "run_connection_relay"]


class ConnectionRelay:
    def __init__(self, upstream_port: int, *, cut_first: int = 0, cut_at: str = "accept") -> None:
        if cut_at not in {"accept", "request"}:
            raise ValueError(f"cut_at must be accept or request, got {cut_at!r}")
        self.upstream_port = upstream_port
        self.cut_first = cut_first
        self.cut_at = cut_at
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._firsts: list[bytes] = []
        self._cut: list[threading.Event] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = False

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._firsts)

    def first_bytes(self, index: int) -> bytes:
        with self._lock:
            return self._firsts[index]

    def wait_cut(self, index: int, timeout: float = 5.0) -> bool:
        """Wait until the relay has closed connection ``index``: one of the first ``cut_first``, or one the client
        ended before sending anything."""
        if not self.wait_accepted(index + 1, timeout):
            return False
        with self._lock:
            event = self._cut[index]
        return event.wait(timeout)

    def wait_accepted(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` connections were accepted."""
        deadline = time.monotonic() + timeout
        while self.accepted < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.accepted >= count

    def start(self) -> None:
        self._spawn(self._accept_loop)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            sockets = list(self._sockets)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (closing alone does not)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in list(self._threads):
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closing:
                sock.close()
                return False
            self._sockets.append(sock)
            return True

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._track(client):
                return
            with self._lock:
                index = len(self._firsts)
                self._firsts.append(b"")
                self._cut.append(threading.Event())
            self._spawn(self._serve, client, index)

    def _serve(self, client: socket.socket, index: int) -> None:
        cut = index < self.cut_first
        if cut and self.cut_at == "accept":
            self._close(client, index)
            return
        try:
            first = client.recv(65536)
        except OSError:
            first = b""
        with self._lock:
            self._firsts[index] = first
        if cut or not first:
            self._close(client, index)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        if not self._track(upstream):
            client.close()
            return
        upstream.sendall(first)
        self._spawn(self._pump, upstream, client)
        self._pump(client, upstream)

    def _close(self, client: socket.socket, index: int) -> None:
        client.close()
        self._cut[index].set()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def run_connection_relay(
    upstream_port: int, *, cut_first: int = 0, cut_at: str = "accept"
) -> Iterator[ConnectionRelay]:
    """A started :class:`ConnectionRelay` on a free loopback port, closed (every connection with it) on exit."""
    relay = ConnectionRelay(upstream_port, cut_first=cut_first, cut_at=cut_at)
    relay.start()
    try:
        yield relay
    finally:
        relay.close()
