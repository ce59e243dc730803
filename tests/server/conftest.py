"""Fixtures for the server tests: a real regtool serve (filesystem and in-memory) and an httpx client on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.redis import redis_server  # noqa: F401  (the fixture, for test_cache.py)
from tests.support.seaweedfs import s3_bucket, seaweedfs  # noqa: F401  (the fixtures, for the s3 driver)
from tests.support.serve import RunningServe, run_serve, serve  # noqa: F401  (the fixture, for test_support.py)


@pytest.fixture(params=["filesystem", "inmemory"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServe]:
    """A fresh regtool serve per test, once per storage driver."""
    root = tmp_path / "registry" if request.param == "filesystem" else None
    with run_serve(root) as running:
        yield running


@pytest.fixture
def client(server: RunningServe) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
