"""``--protocol auto``: v2 when the registry has it, else v1; a forced protocol the registry lacks fails clearly."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.errors import AuthError, RegtoolError, UnsupportedProtocolError
from regtool.reference import Reference
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import build_layout, push_v2_raw

pytestmark = pytest.mark.anyio


def ref(host: str, name: str = "team/app:1") -> Reference:
    return Reference.parse(f"{host}/{name}")


async def seed(server: RunningServe, tmp_path: Path) -> None:
    """Put team/app:1 into every API the server has."""
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=2)
    if server.config.enable_v2:
        push_v2_raw(server.url, layout, descriptor, "team/app", "1")
    if server.config.enable_v1:
        async with Client() as client:
            await client.push(str(tmp_path / "src"), ref(server.host), protocol="v1")


@pytest.mark.parametrize(
    ("enable_v1", "enable_v2", "verdict", "chosen"),
    [(False, True, "v2", "v2"), (True, False, "v1", "v1"), (True, True, "both", "v2")],
)
async def test_auto_picks_v2_when_present_else_v1(
    tmp_path: Path, enable_v1: bool, enable_v2: bool, verdict: str, chosen: str
) -> None:
    with run_serve(tmp_path / "root", enable_v1=enable_v1, enable_v2=enable_v2) as server:
        await seed(server, tmp_path)
        async with Client() as client:
            assert (await client.probe(server.host)).verdict == verdict
        async with Client() as client:
            pulled = await client.pull(ref(server.host), tmp_path / "out")
            pushed = await client.push(str(tmp_path / "src"), ref(server.host, "team/again:1"))
        assert (pulled.protocol, pushed.protocol) == (chosen, chosen)


async def test_forcing_an_absent_protocol_fails_clearly(tmp_path: Path) -> None:
    with run_serve(tmp_path / "a", enable_v1=False) as v2_only, run_serve(tmp_path / "b", enable_v2=False) as v1_only:
        async with Client() as client:
            with pytest.raises(UnsupportedProtocolError, match=f"registry {v2_only.host} does not speak registry v1"):
                await client.pull(ref(v2_only.host), tmp_path / "out", protocol="v1")
            with pytest.raises(UnsupportedProtocolError, match=f"registry {v1_only.host} does not speak registry v2"):
                await client.pull(ref(v1_only.host), tmp_path / "out", protocol="v2")
            with pytest.raises(UnsupportedProtocolError, match="does not speak registry v1"):
                await client.push(str(tmp_path), ref(v2_only.host), protocol="v1")
    assert not (tmp_path / "out").exists()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with what the server's ``reply`` says (``{host}`` in a header value becomes the server's
    own host:port); records the paths it saw."""

    def do_GET(self) -> None:
        status, headers, body = self.server.reply  # type: ignore[attr-defined]
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        host = f"127.0.0.1:{self.server.server_address[1]}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value.replace("{host}", host))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def fake_server(status: int, headers: dict[str, str], body: bytes) -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.reply = (status, headers, body)  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_a_plain_http_server_is_no_registry(tmp_path: Path) -> None:
    page = b"<html><body>Not Found</body></html>"
    with fake_server(404, {"Content-Type": "text/html"}, page) as (host, seen):
        async with Client() as client:
            assert (await client.probe(host)).verdict == "neither"
            with pytest.raises(UnsupportedProtocolError, match=f"no registry API found at {host}"):
                await client.pull(ref(host), tmp_path / "out")
    assert "/v2/" in seen and "/v1/_ping" in seen
    assert not (tmp_path / "out").exists()


async def test_a_refused_connection(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: connections are refused
        async with Client(retries=0) as client:
            result = await client.probe(host)
            assert result.verdict == "neither"
            assert result.evidence and all("cannot connect" in (e.error or "") for e in result.evidence)
            with pytest.raises(RegtoolError, match="cannot connect"):
                await client.pull(ref(host), tmp_path / "out")


async def test_a_v2_registry_answering_401_is_v2_and_never_falls_back_to_v1(tmp_path: Path) -> None:
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
    headers = {
        "Docker-Distribution-API-Version": "registry/2.0",
        # The token endpoint is this same server, so it answers 401 too: the credentials are refused.
        "WWW-Authenticate": 'Bearer realm="http://{host}/token",service="fake"',
        "Content-Type": "application/json",
    }
    with fake_server(401, headers, body) as (host, seen):
        async with Client(retries=0) as client:
            result = await client.probe(host)
            assert result.verdict == "v2"
            assert (result.v2.status, result.v2.auth_scheme) == (401, "bearer")
        seen.clear()
        async with Client(retries=0) as client:
            with pytest.raises(AuthError):
                await client.pull(ref(host), tmp_path / "out")
    assert any(path.startswith("/token?") for path in seen)
    assert "/v1/_ping" not in seen
    assert not (tmp_path / "out").exists()
