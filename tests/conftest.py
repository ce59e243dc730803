"""Shared test configuration.

Interop tests need real peers from Debian (docker-registry, skopeo). Outside CI a missing binary skips the
test; under CI (the ``CI`` variable set) it fails, so a green CI run means the interop tests really ran.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from pytest_httpx import HTTPXMock

IN_CI = bool(os.environ.get("CI"))


# The Ctrl-C tests send SIGINT to the regtool processes they start. A run launched as a background job of a
# non-interactive shell (``.ci/run &``) starts with SIGINT ignored, which every child inherits, and a regtool
# that ignores Ctrl-C cannot be tested for it. A handler of our own is reset to the default in each child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def require_binary(name: str) -> str:
    """The path of ``name``; skip the test when it is missing, fail instead under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if IN_CI:
            pytest.fail(f"{message}; interop tests must run under CI")
        pytest.skip(message)
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def httpx_mock(httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch) -> HTTPXMock:
    """pytest-httpx's mock, answering the Client's requests too: it replaces httpx's AsyncHTTPTransport, which the
    Client does not use (its PoolTransport sends over the pool's connections), so that one is routed the same way."""
    import httpx

    from regtool.client.net.connections import PoolTransport

    monkeypatch.setattr(PoolTransport, "handle_async_request", httpx.AsyncHTTPTransport.handle_async_request)
    return httpx_mock


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Under CI, any skip of an interop test is a failure, whatever raised it.
    if IN_CI and report.skipped and "interop" in report.keywords:
        report.outcome = "failed"
        report.longrepr = f"interop test skipped under CI: {report.longrepr}"
