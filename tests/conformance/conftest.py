"""The conformance suite's registry: a real regtool serve per test, once per storage driver.

A driver joins the suite by adding its name to ``DRIVERS`` and a branch to ``_config_for``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.seaweedfs import S3Bucket, s3_bucket, seaweedfs  # noqa: F401  (the fixtures, for s3)
from tests.support.serve import RunningServe, run_serve

DRIVERS = ["filesystem", "inmemory", "s3"]


def _config_for(driver: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``run_serve`` arguments that put the registry on ``driver``."""
    if driver == "filesystem":
        return {"root": tmp_path / "registry"}
    if driver == "inmemory":
        return {"root": None, "storage": "inmemory"}
    if driver == "s3":
        # A fresh bucket on SeaweedFS; blob GETs and HEADs answer 307 to the store, followed as the spec allows.
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        return {"root": None, "storage": "s3", "s3": bucket.settings}
    raise AssertionError(f"no conformance set-up for driver {driver!r}")


@pytest.fixture(params=DRIVERS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServe]:
    settings = _config_for(request.param, tmp_path, request)
    with run_serve(**settings) as running:
        yield running


@pytest.fixture
def client(registry: RunningServe) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30, follow_redirects=True) as http:
        yield http


@pytest.fixture(params=DRIVERS)
def client_without_deletes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    """A client of a registry with deletes disabled (distribution's default for a configuration file)."""
    settings = _config_for(request.param, tmp_path, request)
    with (
        run_serve(**settings, delete_enabled=False) as running,
        httpx.Client(base_url=running.url, timeout=30, follow_redirects=True) as http,
    ):
        yield http
