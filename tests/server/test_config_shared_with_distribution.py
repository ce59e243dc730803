"""One config.yml for distribution and regtool serve: both start from the same file (the address from
REGISTRY_HTTP_ADDR, the S3 secret from REGISTRY_STORAGE_S3_SECRETKEY, as a deployment passes them) on the same
bucket on SeaweedFS, and each stores and serves images there under the file's rootdirectory.

The two do not read each other's images: distribution keeps its tree under ``docker/registry/v2/`` and its
manifest links differ from regtool's (``server/storage/paths.py``), so the test checks each on its own content.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from tests.conformance.steps import relative_location, with_query
from tests.conftest import require_binary
from tests.server.helpers import digest_of, image_manifest, push_manifest, random_blob
from tests.server.test_serve_config_cli import serve_with_config
from tests.support.distribution import free_port, stop_process
from tests.support.seaweedfs import S3Bucket

pytestmark = pytest.mark.interop


def _push_blob(client: httpx.Client, name: str, data: bytes) -> None:
    """POST + PUT, the digest added to the Location's query (distribution keeps its upload state there)."""
    started = client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202, started.text
    closed = client.put(with_query(relative_location(started), digest=digest_of(data)), content=data)
    assert closed.status_code == 201, closed.text


def _config(bucket: S3Bucket) -> str:
    settings = bucket.settings
    assert settings.endpoint is not None
    return f"""\
version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  s3:
    regionendpoint: {settings.endpoint}
    bucket: {settings.bucket}
    region: us-east-1
    rootdirectory: /shared
    accesskey: {settings.access_key}
    secure: false
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:5000
  secret: one-secret-for-every-instance
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def test_distribution_and_serve_share_one_file_and_one_bucket(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    binary = require_binary("docker-registry")
    config = tmp_path / "config.yml"
    config.write_text(_config(s3_bucket))
    secret = {"REGISTRY_STORAGE_S3_SECRETKEY": str(s3_bucket.settings.secret_key)}
    port = free_port()
    # distribution panics at start when AWS_CA_BUNDLE is set; it talks plain HTTP to the store here.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(secret, REGISTRY_HTTP_ADDR=f"127.0.0.1:{port}")
    log = tmp_path / "distribution.log"
    with open(log, "wb") as out:
        distribution = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except httpx.TransportError:
                if distribution.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"distribution did not start: {log.read_text()}") from None
                time.sleep(0.1)
        serve_port = free_port()
        env_serve = {**secret, "REGISTRY_HTTP_ADDR": f"127.0.0.1:{serve_port}"}
        with (
            serve_with_config(config, env=env_serve, port=serve_port) as (serve_url, _log),
            httpx.Client(base_url=serve_url) as serve,
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as dist,
        ):
            layers = {}
            for client, name in ((serve, "shared/app"), (dist, "shared/dist")):
                config_blob, layer = b'{"architecture":"amd64","os":"linux"}', random_blob(300_000)
                _push_blob(client, name, config_blob)
                _push_blob(client, name, layer)
                manifest = image_manifest(config_blob, [layer])
                assert push_manifest(client, name, "v1", manifest, mt.OCI_MANIFEST).status_code == 201
                pulled = client.get(f"/v2/{name}/manifests/v1", headers={"Accept": mt.OCI_MANIFEST})
                assert pulled.status_code == 200, pulled.text
                assert pulled.content == manifest
                assert client.get(f"/v2/{name}/blobs/{digest_of(layer)}").content == layer
                layers[name] = digest_of(layer)[7:]
        # Each keeps its registry under the file's rootdirectory in the file's bucket, in its own tree.
        listed = s3_bucket.store.client.list_objects_v2(Bucket=s3_bucket.settings.bucket, Prefix="shared/")
        keys = {entry["Key"] for entry in listed.get("Contents", [])}
        ours, theirs = layers["shared/app"], layers["shared/dist"]
        assert f"shared/blobs/sha256/{ours[:2]}/{ours}/data" in keys
        assert f"shared/docker/registry/v2/blobs/sha256/{theirs[:2]}/{theirs}/data" in keys
    finally:
        stop_process(distribution, timeout=10)
