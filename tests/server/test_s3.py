"""The s3 driver on a real store (SeaweedFS): what the shared driver suite cannot show, and serve on top of it.

Two drivers on one bucket stand for two processes: a writer one of them closed is continued by the other.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from regtool.errors import UsageError
from regtool.server.config import ServerConfig
from regtool.server.storage.driver import PathNotFound
from regtool.server.storage.s3 import MIN_PART_SIZE, S3Driver
from tests.cli.support import regtool
from tests.server.helpers import digest_of, push_blob, random_blob
from tests.support.seaweedfs import S3Bucket
from tests.support.serve import free_port, run_serve, run_serve_process

PART = MIN_PART_SIZE


@pytest.fixture
def driver(s3_bucket: S3Bucket) -> S3Driver:
    """A driver whose parts are S3's smallest, so a few MiB show every case."""
    return S3Driver(replace(s3_bucket.settings, chunk_size=PART))


def _open_uploads(driver: S3Driver) -> list[str]:
    response = driver.client.list_multipart_uploads(Bucket=driver.bucket)
    return [u["Key"] for u in response.get("Uploads", [])]


def test_writer_continues_another_process_upload_across_parts(driver: S3Driver) -> None:
    first, second = driver, S3Driver(driver.settings)
    data = os.urandom(2 * PART + 12345)
    writer = first.writer("uploads/u/data")
    writer.write(data[: PART + 100])  # one whole part sent, 100 bytes waiting in the store
    writer.close()
    assert second.stat("uploads/u/data").size == PART + 100
    assert second.list("uploads/u") == []  # the waiting bytes are hidden; the data is not an object yet
    writer = second.writer("uploads/u/data", append=True)
    assert writer.size == PART + 100
    writer.write(data[PART + 100 : PART + 200])
    writer.close()
    writer = first.writer("uploads/u/data", append=True)
    writer.write(data[PART + 200 :])
    writer.commit()
    assert hashlib.sha256(second.get_content("uploads/u/data")).digest() == hashlib.sha256(data).digest()
    assert second.list("uploads/u") == ["data"]
    assert _open_uploads(first) == []


def test_a_writer_killed_after_its_tail_went_out_in_a_part_reports_only_what_is_held(driver: S3Driver) -> None:
    # The waiting tail opens the next part; a writer killed after sending that part (no close) must not leave
    # the tail counted a second time, or the upload claims bytes it does not hold and can never complete.
    data = os.urandom(3 * PART)
    writer = driver.writer("uploads/k/data")
    writer.write(data[: PART + 100])
    writer.close()
    resumed = S3Driver(driver.settings).writer("uploads/k/data", append=True)
    resumed.write(data[PART + 100 : 2 * PART + 50])  # the part sent holds the 100 tail bytes; 50 wait in memory
    del resumed  # killed: the 50 bytes in memory are lost, nothing else
    held = driver.stat("uploads/k/data").size
    assert held == 2 * PART
    finisher = driver.writer("uploads/k/data", append=True)
    assert finisher.size == held
    finisher.write(data[held:])
    finisher.commit()
    assert driver.get_content("uploads/k/data") == data


def test_truncate_into_sent_parts(driver: S3Driver) -> None:
    data = os.urandom(2 * PART + 10)
    writer = driver.writer("f")
    writer.write(data)  # two parts sent
    writer.truncate(PART + 7)  # S3 cannot read the parts back: completed, then continued from the object
    assert writer.size == PART + 7
    writer.write(b"tail")
    writer.close()
    assert driver.stat("f").size == PART + 11
    driver.writer("f", append=True).commit()
    assert driver.get_content("f") == data[: PART + 7] + b"tail"
    assert _open_uploads(driver) == []


def test_delete_aborts_the_multipart_upload(driver: S3Driver) -> None:
    writer = driver.writer("uploads/abandoned/data")
    writer.write(os.urandom(PART + 1))
    writer.close()
    driver.put_content("uploads/abandoned/info", b"{}")
    assert _open_uploads(driver) == ["uploads/abandoned/data"]
    driver.delete("uploads/abandoned")
    assert _open_uploads(driver) == []
    with pytest.raises(PathNotFound):
        driver.stat("uploads/abandoned/data")
    assert driver.client.list_objects_v2(Bucket=driver.bucket).get("Contents") is None


def test_large_move_copies_in_parts(driver: S3Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    from regtool.server.storage import s3

    monkeypatch.setattr(s3, "COPY_PART_SIZE", PART)  # 3 copied parts without a 200 MiB object
    data = os.urandom(2 * PART + 999)
    driver.put_content("uploads/x/data", data)
    driver.move("uploads/x/data", "blobs/x/data")
    assert driver.get_content("blobs/x/data") == data
    with pytest.raises(PathNotFound):
        driver.stat("uploads/x/data")
    with driver.reader("blobs/x/data", len(data)) as f:
        assert f.read() == b""


def test_start_up_names_endpoint_and_bucket(s3_bucket: S3Bucket) -> None:
    missing = replace(s3_bucket.settings, bucket="no-such-bucket")
    with pytest.raises(UsageError, match=r"bucket 'no-such-bucket' at http://127\.0\.0\.1:\d+ does not exist"):
        S3Driver(missing).check_reachable()
    wrong_key = replace(s3_bucket.settings, secret_key="wrong")
    with pytest.raises(UsageError, match=r"refused access \(403"):
        S3Driver(wrong_key).check_reachable()
    with pytest.raises(UsageError, match="below S3's minimum part size"):
        replace(s3_bucket.settings, chunk_size=PART - 1)


def test_blob_get_and_head_redirect_to_a_presigned_url(s3_bucket: S3Bucket) -> None:
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server, httpx.Client(base_url=server.url) as http:
        blob = random_blob(100_000)
        digest = push_blob(http, "r", blob)
        for method in ("GET", "HEAD"):
            response = http.request(method, f"/v2/r/blobs/{digest}")
            assert response.status_code == 307
            assert response.headers["docker-content-digest"] == digest
            location = response.headers["location"]
            assert location.startswith(s3_bucket.store.endpoint) and "X-Amz-Signature=" in location
            if method == "GET":
                direct = httpx.get(location, headers={"Range": "bytes=10-19"})
                assert (direct.status_code, direct.content) == (206, blob[10:20])
            else:
                direct = httpx.head(location)
                assert (direct.status_code, direct.headers["content-length"]) == (200, str(len(blob)))
        # The store checks the signature: a URL for another blob's key is refused.
        tampered = http.get(f"/v2/r/blobs/{digest}").headers["location"].replace(digest[7:], "0" * 64)
        assert httpx.get(tampered).status_code == 403
        # An unknown blob is still the registry's answer, not the store's.
        assert http.get(f"/v2/r/blobs/{digest_of(b'nope')}").status_code == 404


def test_no_redirect_streams_the_blob(s3_bucket: S3Bucket) -> None:
    settings = replace(s3_bucket.settings, root_directory="reg")
    with (
        run_serve(None, storage="s3", s3=settings, storage_redirect=False) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        blob = random_blob(PART + 3)
        digest = push_blob(http, "r", blob)
        assert http.get(f"/v2/r/blobs/{digest}").content == blob
        ranged = http.get(f"/v2/r/blobs/{digest}", headers={"Range": f"bytes={PART}-"})
        assert (ranged.status_code, ranged.content) == (206, blob[PART:])


def test_upload_post_advertises_the_part_size(s3_bucket: S3Bucket) -> None:
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server, httpx.Client(base_url=server.url) as http:
        response = http.post("/v2/r/blobs/uploads/")
        assert response.status_code == 202
        assert response.headers["oci-chunk-min-length"] == str(s3_bucket.settings.chunk_size)


def test_repeated_close_is_answered_again(s3_bucket: S3Bucket) -> None:
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server, httpx.Client(base_url=server.url) as http:
        blob = random_blob(1000)
        location = http.post("/v2/r/blobs/uploads/").headers["location"]
        assert http.patch(location, content=blob).status_code == 202
        first = http.put(location, params={"digest": digest_of(blob)})
        again = http.put(location, params={"digest": digest_of(blob)})
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["docker-content-digest"] == digest_of(blob)
        other = http.put(location, params={"digest": digest_of(b"other")})
        assert other.status_code == 404 and other.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


def test_config_needs_s3_settings_for_s3_storage() -> None:
    with pytest.raises(UsageError, match="s3 storage needs its settings"):
        ServerConfig(storage="s3")


def test_chunked_push_alternating_between_two_instances(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    settings = s3_bucket.settings
    args = ["--storage", "s3", "--s3-endpoint", s3_bucket.store.endpoint, "--s3-bucket", settings.bucket]
    args += ["--s3-path-style", "--no-web", "--quiet"]
    env = s3_bucket.store.env()
    blob = random_blob(3 * settings.chunk_size + 123_457)
    digest = digest_of(blob)
    # Chunks below S3's part minimum, across part boundaries and exactly a part: every request to the other one.
    sizes = [1_000_000, 3_000_000, settings.chunk_size, 7_000_000, 5, settings.chunk_size + 1]
    with (
        run_serve_process(tmp_path / "a", *args, env=env) as one,
        run_serve_process(tmp_path / "b", *args, env=env) as two,
        httpx.Client(timeout=60) as http,
    ):
        instances = itertools.cycle([one.url, two.url])
        started = http.post(f"{next(instances)}/v2/r/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["location"]
        offset = 0
        for size in sizes:
            chunk = blob[offset : offset + size]
            headers = {"Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
            response = http.patch(f"{next(instances)}{location}", content=chunk, headers=headers)
            assert response.status_code == 202, response.text
            offset += len(chunk)
            assert response.headers["range"] == f"0-{offset - 1}"
            status = http.get(f"{next(instances)}{location}")
            assert (status.status_code, status.headers["range"]) == (204, f"0-{offset - 1}")
        closing = f"{next(instances)}{location}"
        closed = http.put(closing, params={"digest": digest}, content=blob[offset:])
        assert closed.status_code == 201, closed.text
        # The close is idempotent, through either instance.
        assert http.put(f"{next(instances)}{location}", params={"digest": digest}).status_code == 201
        for base in (one.url, two.url):
            fetched = http.get(f"{base}/v2/r/blobs/{digest}", follow_redirects=True)
            assert fetched.status_code == 200 and digest_of(fetched.content) == digest
    # The start line says where the registry is.
    assert f"s3 bucket {settings.bucket} at {s3_bucket.store.endpoint}" in one.log_path.read_text()
    client = s3_bucket.store.client
    assert client.list_multipart_uploads(Bucket=settings.bucket).get("Uploads") is None
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=settings.bucket).get("Contents", [])]
    assert not [key for key in keys if key.startswith("uploads/")]


def test_purge_aborts_the_abandoned_multipart_upload(s3_bucket: S3Bucket) -> None:
    settings = replace(s3_bucket.settings, chunk_size=PART)
    with (
        run_serve(None, storage="s3", s3=settings, upload_purge_age=0.5) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        location = http.post("/v2/r/blobs/uploads/").headers["location"]
        assert http.patch(location, content=random_blob(PART + 10)).status_code == 202
        client = s3_bucket.store.client
        assert len(client.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", [])) == 1
        time.sleep(1.5)
        http.get("/v2/")  # a request gives the purge its turn
        gone = http.get(location)
        assert gone.status_code == 404
        assert client.list_multipart_uploads(Bucket=settings.bucket).get("Uploads") is None


def test_serve_start_up_refuses_a_bucket_it_cannot_use(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    endpoint = s3_bucket.store.endpoint
    env = s3_bucket.store.env()
    base = ["serve", "--port", "0", "--storage", "s3", "--s3-endpoint", endpoint, "--s3-path-style"]
    missing = regtool(*base, "--s3-bucket", "no-such-bucket", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: s3 storage: bucket 'no-such-bucket' at {endpoint} does not exist"
    no_bucket = regtool(*base, cwd=tmp_path, env=env)
    assert (no_bucket.returncode, no_bucket.stderr.strip()) == (2, "error: --storage s3 needs --s3-bucket")
    stray = regtool("serve", "--s3-bucket", "b", cwd=tmp_path, env=env)
    assert (stray.returncode, stray.stderr.strip()) == (2, "error: the --s3-* options are for --storage s3")
    with_root = regtool(*base, "--s3-bucket", "b", "--root", str(tmp_path), cwd=tmp_path, env=env)
    assert with_root.returncode == 2 and "--root is for filesystem storage" in with_root.stderr


def test_a_store_gone_away_is_a_storage_fault_not_a_bug(s3_bucket: S3Bucket) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    gone = S3Driver(replace(s3_bucket.settings, endpoint=closed))
    with pytest.raises(OSError, match="object store unreachable") as caught:
        gone.get_content("x")
    assert caught.value.errno == errno.ECONNREFUSED
    refused = S3Driver(replace(s3_bucket.settings, secret_key="wrong"))
    with pytest.raises(OSError, match="object store refused access") as caught:
        refused.stat("x")
    assert caught.value.errno == errno.EACCES
    with (
        run_serve(None, storage="s3", s3=s3_bucket.settings) as server,
        httpx.Client(base_url=server.url, timeout=180) as http,
    ):
        digest = push_blob(http, "r", random_blob(100))
        # The store goes away under the running registry: one clear error, no traceback, no 500 (after botocore
        # has retried the refused connection a few times).
        server.app.state.context.driver.client = gone.client
        response = http.get(f"/v2/r/blobs/{digest}")
        assert response.status_code == 507
        assert response.json()["errors"][0]["message"] == f"storage unreachable while handling GET /v2/r/blobs/{digest}"


def test_a_blob_copy_left_unfinished_does_not_pass_for_the_blob(s3_bucket: S3Bucket) -> None:
    # An instance killed while its multipart copy into the blob store ran leaves that multipart upload at the
    # blob's key: the blob is not stored, and a later push of it must store it for real.
    blob = random_blob(4096)
    digest = digest_of(blob)
    data = f"blobs/sha256/{digest[7:9]}/{digest[7:]}/data"
    store = S3Driver(s3_bucket.settings)
    store.client.create_multipart_upload(Bucket=store.bucket, Key=store.key(data))
    with pytest.raises(PathNotFound):
        store.stat(data)
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server, httpx.Client(base_url=server.url) as http:
        assert http.head(f"/v2/r/blobs/{digest}").status_code == 404
        assert push_blob(http, "r", blob) == digest
        fetched = http.get(f"/v2/r/blobs/{digest}", follow_redirects=True)
        assert (fetched.status_code, fetched.content) == (200, blob)


def test_a_temporary_file_a_crashed_writer_left_is_purged(s3_bucket: S3Bucket) -> None:
    # A pull-through fetch or a v1 layer killed mid-write leaves only the parts of a multipart upload, which no
    # listing shows; the upload purge (and gc, which shares it) must still find and abort it.
    from regtool.server.purge import purge_uploads
    from regtool.server.storage.registry import Registry

    driver = S3Driver(s3_bucket.settings)
    registry = Registry(driver)
    _path, writer = registry.blobs.temp_writer()
    writer.write(b"x" * (2 * MIN_PART_SIZE + 10))  # parts went out; then the process died (no commit, no discard)
    assert driver.uploads_under(driver.key("uploads"))
    assert len(purge_uploads(registry, max_age=0, now=time.time() + 1)) == 1
    assert driver.uploads_under(driver.key("uploads")) == []


def test_gc_aborts_a_blob_move_a_killed_serve_left_unfinished(driver: S3Driver) -> None:
    # A serve killed while it copied a large blob into blobs/ (UploadPartCopy) leaves a multipart upload there,
    # which no object listing shows: only the collector's grace period stands between it and the abort.
    from regtool.server.gc import GcOptions, collect_garbage
    from regtool.server.storage.registry import Registry

    key = f"blobs/sha256/ab/{'ab' * 32}/data"
    started = driver.client.create_multipart_upload(Bucket=driver.bucket, Key=key)["UploadId"]
    driver.client.upload_part(Bucket=driver.bucket, Key=key, UploadId=started, PartNumber=1, Body=bytes(PART))
    kept = collect_garbage(Registry(driver), GcOptions(delay=3600))
    assert [u["Key"] for u in driver.uploads_under("blobs")] == [key]
    assert not [r for r in kept.removed if r.kind == "upload"]
    report = collect_garbage(Registry(driver), GcOptions(delay=0), now=time.time() + 1)
    assert driver.uploads_under("blobs") == []
    assert [(r.kind, r.size) for r in report.removed] == [("upload", PART)]
