"""The system CA store: loaded ahead in a thread by ``warm_default_context`` into the next client's default context,
else only when a server answers in TLS (a plain-HTTP server asked over https never makes a client load it)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.client.net.connections import ConnectionPool
from regtool.client.net.tls import TLSContexts, TLSSettings, TrustOnDemand, warm_default_context
from tests.support.pki import make_pki


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread of every load of the system CA store."""
    real = ssl.SSLContext.load_default_certs
    names: list[str] = []

    def recorded(context: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        names.append(threading.current_thread().name)
        real(context, purpose)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", recorded)
    return names


def _wait_for_warm_up() -> None:
    for thread in threading.enumerate():
        if thread.name == "regtool-tls-warm-up":
            thread.join()


def test_the_next_default_context_is_the_one_warmed_up(loads: list[str]) -> None:
    warm_default_context()
    context = TLSContexts().default()
    _wait_for_warm_up()
    assert loads == ["regtool-tls-warm-up"]
    assert isinstance(context, TrustOnDemand) and context.trusted
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    other = TLSContexts().default()  # each context warmed up serves one client
    assert other is not context and isinstance(other, TrustOnDemand) and not other.trusted
    assert loads == ["regtool-tls-warm-up"]


def test_a_second_warm_up_before_use_loads_nothing_more(loads: list[str]) -> None:
    warm_default_context()
    warm_default_context()
    context = TLSContexts().default()
    assert isinstance(context, TrustOnDemand)
    context.load_trust()  # waits for the warm-up's load, or makes it
    _wait_for_warm_up()
    assert len(loads) == 1


def test_an_insecure_context_loads_no_store(loads: list[str]) -> None:
    context = TLSContexts(TLSSettings(insecure=True)).default()
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname
    assert loads == []


def test_a_failed_warm_up_loads_again_where_the_store_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ssl.SSLContext.load_default_certs
    calls: list[str] = []

    def fails_in_the_warm_up(context: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "regtool-tls-warm-up":
            raise ssl.SSLError("no CA store")
        real(context, purpose)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", fails_in_the_warm_up)
    warm_default_context()
    context = TLSContexts().default()
    _wait_for_warm_up()
    assert isinstance(context, TrustOnDemand) and not context.trusted
    context.load_trust()
    assert context.trusted
    assert calls == ["regtool-tls-warm-up", threading.current_thread().name]


def _read_client_hello(conn: socket.socket) -> None:
    header = b""
    while len(header) < 5:
        chunk = conn.recv(5 - len(header))
        if not chunk:
            return
        header += chunk
    remaining = int.from_bytes(header[3:5], "big")
    while remaining > 0:
        chunk = conn.recv(remaining)
        if not chunk:
            return
        remaining -= len(chunk)


@pytest.fixture
def plain_http_server() -> Iterator[int]:
    """A server on 127.0.0.1 that answers whatever comes with an HTTP 400, as a plain-HTTP registry does."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                _read_client_hello(conn)  # all of it: a close with unread data would reset the connection
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(5)


def test_a_plain_http_server_fails_the_handshake_without_the_store_loaded(
    loads: list[str], plain_http_server: int
) -> None:
    contexts = TLSContexts()
    pool = ConnectionPool(contexts.default(), 60.0, ssl_for=contexts.for_host)
    conn = pool.new("https", "127.0.0.1", plain_http_server)
    with pytest.raises(ssl.SSLError):  # wrong version number, or EOF when the server's close is read first
        conn.connect()
    conn.close()
    assert loads == []
    assert not contexts.default().trusted  # type: ignore[attr-defined]


def test_a_tls_server_is_verified_with_the_store_loaded_on_its_answer(loads: list[str], tmp_path: Path) -> None:
    """A TLS server whose certificate no system CA signed: the store is loaded when it answers, and the
    certificate is refused as before; with its CA added, the same server is accepted."""
    pki = make_pki(tmp_path / "pki")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with server_context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for settings, accepted in ((TLSSettings(), False), (TLSSettings(ca_cert=pki.ca_cert), True)):
            contexts = TLSContexts(settings)
            pool = ConnectionPool(contexts.default(), 60.0, ssl_for=contexts.for_host)
            conn = pool.new("https", "127.0.0.1", port)
            if accepted:
                conn.connect()
            else:
                with pytest.raises(ssl.SSLCertVerificationError):
                    conn.connect()
            conn.close()
            assert contexts.default().trusted  # type: ignore[attr-defined]
    finally:
        listener.close()
        thread.join(5)
    assert loads == [threading.current_thread().name] * 2


def test_a_server_that_never_answers_the_client_hello_times_out_within_the_connect_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never answers
    contexts = TLSContexts()
    pool = ConnectionPool(contexts.default(), 30.0, ssl_for=contexts.for_host, connect_timeout=0.3)
    conn = pool.new("https", "127.0.0.1", listener.getsockname()[1])
    try:
        with pytest.raises(TimeoutError, match=r"timed out connecting to 127\.0\.0\.1:\d+ after 0\.3 s"):
            conn.connect()
    finally:
        conn.close()
        listener.close()
