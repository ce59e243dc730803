"""The retry bookkeeping (``RetryLog``: -v log lines, ``retry`` events, the ``retries`` count), the upload
resume state on disk, and the per-registry connection cap."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from regtool.client import Client
from regtool.client.net.retry import RetryLog, RetryPolicy
from regtool.client.resume import UploadState, UploadStateStore, default_state_dir
from regtool.reference import Reference
from tests.cli.support import regtool
from tests.faults.conftest import Seeded
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.serve import RequestLog


class _Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, nbytes: int) -> None:
        pass

    def finish(self, key: str, *, status: str = "done") -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))


def test_retry_log_counts_logs_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    events = _Events()
    log = RetryLog(events)
    with caplog.at_level(logging.INFO, logger="regtool.client.net.retry"):
        log.record("GET http://r/v2/x", attempt=1, delay=0.25, reason="HTTP 503")
        log.record("GET http://r/v2/x", attempt=2, delay=0.5, reason="HTTP 503")
    assert log.count == 2
    assert events.events[0] == (
        "retry",
        {"what": "GET http://r/v2/x", "attempt": 1, "delay": 0.25, "reason": "HTTP 503"},
    )
    assert [r.getMessage() for r in caplog.records] == [
        "retry 1 of GET http://r/v2/x in 0.25s: HTTP 503",
        "retry 2 of GET http://r/v2/x in 0.50s: HTTP 503",
    ]


def test_backoff_is_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(backoff_factor=0.5, backoff_max=3.0, jitter=0.2)
    for attempt in range(40):
        delay = policy.backoff(attempt)
        base = min(3.0, 0.5 * 2**attempt)
        assert base <= delay <= min(3.0, base * 1.2)
    assert policy.delay(0, "120") == 60.0  # Retry-After is capped at retry_after_max
    assert policy.delay(0, "2") == 2.0


def test_only_safe_requests_and_transient_statuses_are_retried() -> None:
    policy = RetryPolicy()
    for status in (408, 429, 500, 502, 503, 504):
        assert policy.allows("GET", status) and policy.allows("HEAD", status)
        assert not policy.allows("POST", status) and not policy.allows("PATCH", status)
    for status in (400, 401, 403, 404, 405, 416, 501):
        assert not policy.allows("GET", status)


def test_cli_reports_retries_with_v_and_json(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.status(503, method="GET", path=f"/blobs/{seeded.layer.digest}", times=2))
    verbose = regtool("pull", seeded.ref(proxy.host), "out", "-v", "-q", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    retry_lines = [line for line in verbose.stderr.splitlines() if " retry " in line and "HTTP 503" in line]
    assert len(retry_lines) == 2, verbose.stderr
    proxy.add(Fault.status(503, method="GET", path=f"/blobs/{seeded.config.digest}", times=1))
    machine = regtool("pull", seeded.ref(proxy.host), "out2", "--json", cwd=tmp_path)
    assert machine.returncode == 0, machine.stderr
    assert json.loads(machine.stdout)["retries"] == 1
    lines = [json.loads(line) for line in machine.stderr.splitlines()]
    (retry,) = [line for line in lines if line["event"] == "retry"]
    assert retry["reason"] == "HTTP 503" and retry["attempt"] == 1


def test_upload_state_store_round_trip_and_bad_files(tmp_path: Path) -> None:
    store = UploadStateStore(tmp_path / "state")
    digest = "sha256:" + "a" * 64
    assert store.load("reg:5000", "team/app", digest) is None
    state = UploadState("reg:5000", "team/app", digest, 100, "http://reg:5000/v2/team/app/blobs/uploads/u", 40)
    store.save(state)
    loaded = store.load("reg:5000", "team/app", digest)
    assert loaded is not None and loaded.location == state.location and loaded.offset == 40
    assert loaded.updated > 0
    assert store.load("reg:5000", "other/app", digest) is None  # keyed by registry + repository + digest
    path = store.path("reg:5000", "team/app", digest)
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("{not json")
    assert store.load("reg:5000", "team/app", digest) is None
    path.write_text(json.dumps({"registry": "reg:5000", "repository": "team/app"}))  # fields missing
    assert store.load("reg:5000", "team/app", digest) is None
    store.save(UploadState("reg:5000", "team/app", digest, 100, "http://x", 500))  # offset beyond the size
    assert store.load("reg:5000", "team/app", digest) is None
    store.forget("reg:5000", "team/app", digest)
    assert not path.exists()
    store.forget("reg:5000", "team/app", digest)  # idempotent
    assert [p.name for p in (tmp_path / "state").iterdir()] == []


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REGTOOL_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_state_dir() == tmp_path / "cache" / "regtool" / "uploads"
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "explicit"))
    assert default_state_dir() == tmp_path / "explicit"


def test_per_registry_cap_bounds_concurrent_transfers(tmp_path: Path, seeded: Seeded) -> None:
    server = seeded.server

    async def pull(per_registry: int) -> None:
        async with Client(jobs=8, per_registry=per_registry) as client:
            await client.pull(Reference.parse(seeded.ref(server.host)), tmp_path / f"out{per_registry}")

    server.requests.clear()
    anyio.run(pull, 1)
    blob_gets = server.requests.events("GET", "/blobs/")
    assert len(blob_gets) == 2
    assert RequestLog.max_overlap(blob_gets) == 1


def test_retries_option_is_validated(tmp_path: Path) -> None:
    proc = regtool("pull", "127.0.0.1:1/a:b", "out", "--retries", "-1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--retries" in proc.stderr
