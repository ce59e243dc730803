from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from regtool.digest import Digest
from regtool.errors import IntegrityError, NotFoundError
from regtool.image.blobstore import STAGING_DIR, BlobStore

DATA = bytes(range(256)) * 64  # 16 KiB
DIGEST = Digest.of(DATA)


def staged(store: BlobStore) -> list[str]:
    if not store.staging_dir.exists():
        return []
    return sorted(p.name for p in store.staging_dir.iterdir())


def blob_files(store: BlobStore) -> list[Path]:
    return sorted(p for p in store.blobs_dir.rglob("*") if p.is_file()) if store.blobs_dir.exists() else []


def test_put_bytes_and_read_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert not store.has(DIGEST)
    assert store.size(DIGEST) is None
    assert store.put_bytes(None, DATA) == DIGEST
    assert store.has(DIGEST)
    assert store.size(DIGEST) == len(DATA)
    assert store.path(DIGEST) == tmp_path / "blobs" / "sha256" / DIGEST.encoded
    assert store.path(DIGEST).read_bytes() == DATA
    with store.open_reader(DIGEST) as f:
        assert f.read() == DATA
    assert store.read_bytes(DIGEST) == DATA
    assert list(store.digests()) == [DIGEST]
    assert staged(store) == []


def test_put_bytes_twice_is_a_noop_and_checks_the_digest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put_bytes(DIGEST, DATA)
    assert store.put_bytes(DIGEST, DATA) == DIGEST
    with pytest.raises(IntegrityError, match=str(DIGEST)):
        store.put_bytes(DIGEST, DATA[::-1])


def test_missing_blob_is_not_found(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(NotFoundError, match=DIGEST.encoded):
        store.open_reader(DIGEST)


def test_writer_commit_publishes_atomically(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.open_writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == 0
        writer.write(DATA[:1000])
        assert not store.has(DIGEST)  # readers never see a partial
        writer.write(memoryview(DATA)[1000:])
        assert writer.offset == len(DATA)
        path = writer.commit()
    assert path == store.path(DIGEST)
    assert path.read_bytes() == DATA
    assert staged(store) == []


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    wrong = DATA[:-1] + b"\x00"
    with store.open_writer(DIGEST, len(DATA)) as writer:
        writer.write(wrong)
        with pytest.raises(IntegrityError, match=f"{DIGEST}: digest mismatch"):
            writer.commit()
    assert blob_files(store) == []
    assert staged(store) == []


def test_short_blob_is_a_size_mismatch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    writer = store.open_writer(DIGEST, len(DATA))
    writer.write(DATA[:100])
    with pytest.raises(IntegrityError, match="size mismatch"):
        writer.commit()
    assert blob_files(store) == []
    assert staged(store) == []


def test_overlong_write_fails_at_once_and_drops_the_partial(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(IntegrityError, match="more than the expected 10 bytes"):
        with store.open_writer(Digest.of(b"0123456789"), 10) as writer:
            writer.write(b"0123456789")
            writer.write(b"x")
    assert staged(store) == []


def test_unknown_size_verifies_the_digest_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.open_writer(DIGEST, None) as writer:
        writer.write(DATA)
        writer.commit()
    assert store.size(DIGEST) == len(DATA)


def test_resume_rehashes_the_partial(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ConnectionError):
        with store.open_writer(DIGEST, len(DATA)) as writer:
            writer.write(DATA[:5000])
            raise ConnectionError("network went away")
    assert staged(store) == [f"sha256-{DIGEST.encoded}.partial"]
    assert not store.has(DIGEST)

    # A later run (a new store object, as after a restart) continues from the partial's end.
    again = BlobStore(tmp_path)
    with again.open_writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == 5000
        writer.write(DATA[5000:])
        writer.commit()
    assert again.path(DIGEST).read_bytes() == DATA
    assert staged(again) == []


def test_resume_of_a_corrupt_partial_fails_and_starts_over(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    writer = store.open_writer(DIGEST, len(DATA))
    writer.write(b"garbage" * 100)
    writer.abort(keep_partial=True)
    writer = store.open_writer(DIGEST, len(DATA))
    assert writer.offset == 700
    writer.write(DATA[700:])
    with pytest.raises(IntegrityError):
        writer.commit()
    assert staged(store) == []
    with store.open_writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == 0
        writer.write(DATA)
        writer.commit()
    assert store.has(DIGEST)


def test_resume_false_and_oversized_partial_start_from_zero(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    writer = store.open_writer(DIGEST, len(DATA))
    writer.write(DATA[:100])
    writer.abort(keep_partial=True)
    writer = store.open_writer(DIGEST, len(DATA), resume=False)
    assert writer.offset == 0
    writer.abort(keep_partial=True)
    # a partial longer than the expected size cannot be a prefix of the blob
    partial = store.staging_dir / f"sha256-{DIGEST.encoded}.partial"
    partial.write_bytes(b"x" * 50)
    with store.open_writer(DIGEST, 10) as writer:
        assert writer.offset == 0
        writer.abort(keep_partial=False)
    assert staged(store) == []


def test_abort_without_keep_deletes_the_partial(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    writer = store.open_writer(DIGEST, len(DATA))
    writer.write(DATA[:10])
    writer.abort(keep_partial=False)
    writer.abort(keep_partial=False)  # idempotent
    assert staged(store) == []
    with pytest.raises(ValueError, match="finished writer"):
        writer.write(b"x")


def test_commit_when_blob_already_present_is_a_noop(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put_bytes(None, DATA)
    inode = store.path(DIGEST).stat().st_ino
    with store.open_writer(DIGEST, len(DATA), resume=False) as writer:
        writer.write(DATA)
        writer.commit()
    assert store.path(DIGEST).stat().st_ino == inode
    assert staged(store) == []


def test_two_open_writers_of_one_digest_do_not_share_a_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.open_writer(DIGEST, len(DATA))
    second = store.open_writer(DIGEST, len(DATA))
    assert first.partial_path != second.partial_path
    first.write(DATA[:100])
    second.write(DATA)
    second.commit()  # the second finishes first: it wins
    first.write(DATA[100:])
    first.commit()  # same verified content: a no-op
    assert store.path(DIGEST).read_bytes() == DATA
    assert staged(store) == []


def test_private_partial_is_dropped_on_abort(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.open_writer(DIGEST, len(DATA))
    second = store.open_writer(DIGEST, len(DATA))
    second.write(DATA[:10])
    second.abort(keep_partial=True)  # a private partial cannot be resumed by name: it goes
    first.abort(keep_partial=True)
    assert staged(store) == [f"sha256-{DIGEST.encoded}.partial"]


def test_concurrent_threads_writing_one_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(1 << 20)
    digest = Digest.of(data)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            barrier.wait()
            with store.open_writer(digest, len(data)) as writer:
                view = memoryview(data)[writer.offset :]
                for start in range(0, len(view), 65536):
                    writer.write(view[start : start + 65536])
                writer.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert hashlib.sha256(store.path(digest).read_bytes()).hexdigest() == digest.encoded
    assert staged(store) == []


def test_temp_file_and_adopt(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    f, path = store.new_temp_file()
    with f:
        f.write(DATA)
    assert path.parent.name == STAGING_DIR
    store.adopt(path, DIGEST)
    assert store.path(DIGEST).read_bytes() == DATA
    assert not path.exists()
    f, path = store.new_temp_file()
    f.close()
    store.adopt(path, DIGEST)  # already present: the new file is dropped
    assert not path.exists()
    assert store.remove(DIGEST)
    assert not store.remove(DIGEST)


def test_a_writer_in_another_process_holds_the_partial(tmp_path: Path) -> None:
    import subprocess
    import sys

    child_code = (
        "import sys; from pathlib import Path; from regtool.digest import Digest;"
        "from regtool.image.blobstore import BlobStore;"
        f"w = BlobStore(Path({str(tmp_path)!r})).open_writer(Digest.parse({str(DIGEST)!r}), {len(DATA)});"
        "w.write(bytes(range(256)) * 4); print('ready', flush=True); sys.stdin.readline(); w.abort(keep_partial=True)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", child_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        store = BlobStore(tmp_path)
        with store.open_writer(DIGEST, len(DATA)) as writer:
            assert writer.offset == 0  # the child's partial is locked: this one writes a private file
            assert writer.partial_path.name != f"sha256-{DIGEST.encoded}.partial"
            writer.abort(keep_partial=True)
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0
    with BlobStore(tmp_path).open_writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == 1024  # the child's bytes, resumed
        writer.write(DATA[1024:])
        writer.commit()
    assert BlobStore(tmp_path).path(DIGEST).read_bytes() == DATA


def test_staging_removed_by_another_process_between_mkdir_and_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another pull into the same layout may tidy() the empty staging directory at any moment.
    store = BlobStore(tmp_path)
    real_open = os.open
    tidied: list[str] = []

    def open_after_a_tidy(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if Path(path).parent == store.staging_dir and len(tidied) < 2:
            tidied.append(str(path))
            store.tidy()
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", open_after_a_tidy)
    with store.open_writer(DIGEST, len(DATA)) as writer:
        writer.write(DATA)
        writer.commit()
    f, path = store.new_temp_file()
    f.close()
    monkeypatch.undo()
    assert len(tidied) == 2
    assert store.read_bytes(DIGEST) == DATA
    assert path.parent == store.staging_dir and path.exists()


def test_staging_removed_by_another_writer_within_the_mkdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Path.mkdir(exist_ok=True) finds the directory there, then looks again: a tidy() in between made it raise
    # FileExistsError for a directory that no longer exists (concurrent images synced into one layout).
    store = BlobStore(tmp_path)
    store.staging_dir.mkdir()
    real_mkdir = os.mkdir
    tidied: list[str] = []

    def mkdir_racing_a_tidy(path: str | os.PathLike[str], mode: int = 0o777) -> None:
        if Path(path) == store.staging_dir and not tidied:
            tidied.append(str(path))
            store.tidy()
            raise FileExistsError(17, "File exists", str(path))
        real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", mkdir_racing_a_tidy)
    with store.open_writer(DIGEST, len(DATA)) as writer:
        writer.write(DATA)
        writer.commit()
    monkeypatch.undo()
    assert tidied == [str(store.staging_dir)]
    assert store.read_bytes(DIGEST) == DATA
