"""``regtool sync --rate-limit-floor N`` end to end: a forwarding proxy in front of ``regtool serve`` stamps the
quota a metering registry would state on its answers; the sync pauses at the floor and still completes."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from regtool.client import Client
from regtool.reference import Reference
from tests.cli.support import regtool
from tests.support.images import write_image
from tests.support.serve import RunningServe, run_serve

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class QuotaProxy:
    """Forwards every request to ``upstream`` (host:port) and adds ``stamp(n)``'s headers to the n-th answer."""

    def __init__(self, upstream: str, stamp: Callable[[int], dict[str, str]]) -> None:
        self.arrivals: list[float] = []
        lock = threading.Lock()
        proxy = self
        host, port = upstream.rsplit(":", 1)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                with lock:
                    number = len(proxy.arrivals)
                    proxy.arrivals.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                for name, value in stamp(number).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", answer.getheader("Content-Length") or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[RunningServe, RunningServe]]:
    with run_serve(tmp_path / "src", enable_v1=False) as src, run_serve(tmp_path / "dst", enable_v1=False) as dst:
        yield src, dst


@pytest.mark.anyio
async def test_sync_pauses_at_the_floor_and_completes(
    servers: tuple[RunningServe, RunningServe], tmp_path: Path
) -> None:
    source, dest = servers
    for tag in ("1", "2"):
        write_image(tmp_path / "layout", tag, [{f"file-{tag}": tag.encode()}])
    async with Client() as client:
        for tag in ("1", "2"):
            await client.push(f"{tmp_path / 'layout'}:{tag}", Reference(source.host, "app", tag))
    # The third answer says 2 requests are left of a quota that refills in 1 s.
    proxy = QuotaProxy(
        source.host, lambda n: {"ratelimit-remaining": "2;w=1" if n == 2 else "100;w=1", "ratelimit-limit": "100;w=1"}
    )
    threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
    try:
        done = regtool(
            "sync", "--json", "--rate-limit-floor", "2", f"{proxy.host}/app", f"{dest.host}/mirror", cwd=tmp_path
        )
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    paused = [e for e in events if e.get("event") == "rate-limit"]
    assert len(paused) == 1, events
    assert {k: paused[0][k] for k in ("host", "remaining", "floor", "action", "seconds")} == {
        "host": proxy.host,
        "remaining": 2,
        "floor": 2,
        "action": "pause",
        "seconds": 1.0,
    }
    gaps = [b - a for a, b in zip(proxy.arrivals, proxy.arrivals[1:], strict=False)]
    # The pause comes after the stamped (third) answer; a request already under way then may go before it.
    assert max(gaps) >= 0.95
    assert gaps.index(max(gaps)) >= 2
    assert sum(1 for gap in gaps if gap >= 0.95) == 1
    async with Client() as client:
        for tag in ("1", "2"):
            src = await client.api.head_manifest(Reference(source.host, "app", tag))
            dst = await client.api.head_manifest(Reference(dest.host, "mirror/app", tag))
            assert dst.headers["Docker-Content-Digest"] == src.headers["Docker-Content-Digest"]


def test_a_negative_floor_is_a_usage_error(tmp_path: Path) -> None:
    done = regtool("sync", "--rate-limit-floor", "-1", "127.0.0.1:1/app", "127.0.0.1:2/mirror", cwd=tmp_path)
    assert done.returncode == 2
    assert "--rate-limit-floor" in done.stderr
    assert "Traceback" not in done.stderr
