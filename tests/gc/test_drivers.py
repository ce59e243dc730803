"""The collector works through the driver interface alone: the same scene collected on memory and on S3
(SeaweedFS), in the server's process and by ``serve gc`` naming the bucket in a config file or in the ``--s3-*``
options ``serve`` takes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.server.gc import GcOptions, collect_garbage
from regtool.server.gc.inventory import read_repository, stored_blobs
from regtool.server.storage.registry import Registry
from tests.cli.support import in_process
from tests.gc.conftest import Filled, assert_pulls_identical
from tests.gc.scene import fill
from tests.support.seaweedfs import S3Bucket, SeaweedFS
from tests.support.serve import RunningServe, run_serve


@pytest.fixture(params=["inmemory", "s3"])
def elsewhere(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Filled]:
    if request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        context = run_serve(None, storage="s3", s3=bucket.settings, storage_redirect=False)
    else:
        context = run_serve(None)
    with context as server:
        yield Filled(server, fill(server.url, server.host, tmp_path / "images"), tmp_path / "unused")


def _registry(server: RunningServe) -> Registry:
    registry = server.app.state.context.registry
    assert isinstance(registry, Registry)
    return registry


def test_collects_on_every_driver(elsewhere: Filled, tmp_path: Path) -> None:
    registry = _registry(elsewhere.server)
    report = collect_garbage(registry, GcOptions(delete_untagged=True, delay=0))
    assert {digest for digest, _ in stored_blobs(registry.driver)} == elsewhere.scene.live_untagged
    assert report.bytes_freed == elsewhere.scene.freed(elsewhere.scene.live_untagged)
    # Nothing of "gone" is left (SeaweedFS may still list its emptied prefixes as directories).
    assert read_repository(registry.driver, "gone").empty
    assert {"app", "multi"} <= set(registry.repositories())
    assert_pulls_identical(elsewhere, tmp_path)


def test_serve_gc_reads_the_bucket_from_the_config_file(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = s3_bucket.settings
    for name, value in s3_bucket.store.env().items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "storage:\n"
        "  s3:\n"
        f"    bucket: {settings.bucket}\n"
        f"    region: {settings.region}\n"
        f"    regionendpoint: {settings.endpoint}\n"
        "    secure: false\n"
    )
    with run_serve(None, storage="s3", s3=settings, storage_redirect=False) as server:
        scene = fill(server.url, server.host, tmp_path / "images")
        done = in_process("serve", "gc", "--config", str(config), "--delay", "0", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        registry = _registry(server)
        assert {digest for digest, _ in stored_blobs(registry.driver)} == scene.live_default
        assert report["bytes_freed"] == scene.freed(scene.live_default)
        assert_pulls_identical(Filled(server, scene, tmp_path / "unused"), tmp_path)


def test_serve_gc_takes_the_bucket_from_the_same_options_as_serve(
    seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    with seaweedfs.bucket(root_directory="registry/one") as settings:
        with run_serve(None, storage="s3", s3=settings, storage_redirect=False) as server:
            scene = fill(server.url, server.host, tmp_path / "images")
            options = ["--storage", "s3", "--s3-bucket", settings.bucket, "--s3-endpoint", str(settings.endpoint)]
            options += ["--s3-region", settings.region, "--s3-root", settings.root_directory, "--s3-path-style"]
            done = in_process("serve", "gc", *options, "--delete-untagged", "--delay", "0", "--json")
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            registry = _registry(server)
            assert {digest for digest, _ in stored_blobs(registry.driver)} == scene.live_untagged
            assert report["bytes_freed"] == scene.freed(scene.live_untagged)
            assert_pulls_identical(Filled(server, scene, tmp_path / "unused"), tmp_path)
            # The prefix was honoured: nothing was written beside it in the bucket.
            keys = seaweedfs.client.list_objects_v2(Bucket=settings.bucket).get("Contents", [])
            assert keys and all(item["Key"].startswith("registry/one/") for item in keys)
