"""Request quotas: the client reads ``RateLimit-Remaining`` / Docker Hub's ``ratelimit-remaining`` and slows
down, then pauses, before a floor. A tiny scripted registry (``regtool serve`` meters nothing) states the quotas;
the times its requests arrive are what is measured."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest

from regtool.client import Client
from regtool.client.net.ratelimit import Quota, RateLimiter, parse_quota
from regtool.client.progress import NullProgress
from regtool.errors import UsageError
from regtool.reference import Reference

pytestmark = pytest.mark.anyio

QuotaScript = Callable[[int], dict[str, str]]


class MeteredRegistry:
    """Answers ``/v2/`` and manifest HEADs; the n-th manifest request (from 0) gets ``script(n)``'s headers."""

    def __init__(self, script: QuotaScript) -> None:
        self.script = script
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_HEAD(self) -> None:
                self._answer()

            def _answer(self) -> None:
                headers = {"Docker-Distribution-API-Version": "registry/2.0", "Content-Length": "0"}
                if "/manifests/" in self.path:
                    with registry._lock:
                        number = len(registry.arrivals)
                        registry.arrivals.append(time.monotonic())
                    headers.update(registry.script(number))
                    headers["Docker-Content-Digest"] = "sha256:" + "0" * 64
                    headers["Content-Type"] = "application/vnd.oci.image.manifest.v1+json"
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


@pytest.fixture
def metered() -> Iterator[Callable[[QuotaScript], MeteredRegistry]]:
    started: list[MeteredRegistry] = []

    def start(script: QuotaScript) -> MeteredRegistry:
        registry = MeteredRegistry(script)
        threading.Thread(target=registry.server.serve_forever, daemon=True).start()
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.server.shutdown()
        registry.server.server_close()


class Events(NullProgress):
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def event(self, name: str, **fields: Any) -> None:
        self.seen.append((name, fields))


async def heads(registry: MeteredRegistry, count: int, *, floor: int | None, concurrent: bool = False) -> Events:
    events = Events()
    async with Client(rate_limit_floor=floor, retries=0, use_docker_config=False, progress=events) as client:
        refs = [Reference(registry.host, "app", f"t{i}") for i in range(count)]
        if concurrent:
            async with anyio.create_task_group() as group:
                for ref in refs:
                    group.start_soon(client.api.head_manifest, ref)
        else:
            for ref in refs:
                await client.api.head_manifest(ref)
    return events


async def test_docker_hub_quota_at_the_floor_pauses_for_its_window(metered: Any) -> None:
    # 5 left, then 2 left (the floor): the third request waits the 1 s window; then plenty again.
    registry = metered(
        lambda n: {"ratelimit-limit": "100;w=1", "ratelimit-remaining": ["5;w=1", "2;w=1"][n] if n < 2 else "90;w=1"}
    )
    events = await heads(registry, 4, floor=2)
    first, pause, after = registry.gaps()
    assert first < 0.5
    assert pause >= 0.95
    assert after < 0.5
    told = [fields for name, fields in events.seen if name == "rate-limit"]
    assert told == [{"host": registry.host, "remaining": 2, "floor": 2, "action": "pause", "seconds": 1.0}]


async def test_near_the_floor_requests_are_spaced_until_the_reset(metered: Any) -> None:
    # 6 left over a floor of 4: the 2 above the floor are spread over the 1 s to the reset, even when concurrent.
    registry = metered(lambda n: {"RateLimit-Remaining": "6", "RateLimit-Reset": "1"})
    events = Events()
    async with Client(rate_limit_floor=4, retries=0, use_docker_config=False, progress=events) as client:
        await client.api.head_manifest(Reference(registry.host, "app", "first"))
        async with anyio.create_task_group() as group:
            for i in range(3):
                group.start_soon(client.api.head_manifest, Reference(registry.host, "app", f"t{i}"))
    assert [round(gap, 1) >= 0.5 for gap in registry.gaps()] == [True, True, True]
    assert (
        "rate-limit",
        {"host": registry.host, "remaining": 6, "floor": 4, "action": "slow", "seconds": 0.5},
    ) in events.seen


async def test_without_a_floor_a_stated_quota_changes_nothing(metered: Any) -> None:
    registry = metered(lambda n: {"ratelimit-remaining": "0;w=30"})
    started = time.monotonic()
    events = await heads(registry, 5, floor=None, concurrent=True)
    assert time.monotonic() - started < 2.0
    assert len(registry.arrivals) == 5
    assert not [name for name, _ in events.seen if name == "rate-limit"]


@pytest.mark.parametrize(
    ("headers", "quota"),
    [
        ({"ratelimit-remaining": "76;w=21600"}, Quota(76, 21600.0)),
        ({"RateLimit-Remaining": "0"}, Quota(0, None)),
        ({"RateLimit-Remaining": "3", "RateLimit-Reset": "12"}, Quota(3, 12.0)),
        ({"RateLimit-Remaining": "10;w=60, 100;w=3600"}, Quota(10, 60.0)),
        ({"RateLimit-Remaining": "many"}, None),
        ({"RateLimit-Remaining": "-1"}, None),
        ({}, None),
    ],
)
def test_parse_quota(headers: dict[str, str], quota: Quota | None) -> None:
    assert parse_quota(headers) == quota


async def test_a_pause_without_a_stated_refill_waits_the_default_minute() -> None:
    now = [100.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    limiter.observe("h", {"RateLimit-Remaining": "3"})
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", sleep)
        await limiter.wait("h")
    assert waited == [60.0]


def test_a_negative_floor_is_refused() -> None:
    with pytest.raises(UsageError, match="rate_limit_floor must be 0 or more, got -1"):
        Client(rate_limit_floor=-1)
