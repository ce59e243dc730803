"""The ``s3`` storage driver: the registry in a bucket of any S3-compatible store, through botocore.

Paths map to keys under ``root_directory``. A blocking botocore client fits the driver contract (drivers run in
worker threads) and is thread-safe, so one client serves every request.

Writers stream. Bytes are buffered up to one part (``chunk_size``, at least S3's 5 MiB minimum) and sent as a
part of a multipart upload; a file smaller than one part is a plain PutObject. A closed, uncommitted file is
kept in the store so another process can continue it (an upload's next chunk may land on another instance):

- no part sent yet: the bytes are the object itself;
- parts sent: the multipart upload (found again with ListMultipartUploads and ListParts) holds the full parts,
  the bytes short of a part wait in a hidden sibling object ``.<name>.tail``, and the object itself is absent.

Every part but the last is exactly one full part, which is what S3 requires; the tail becomes the last part on
commit. Truncating into bytes already sent as parts completes the upload and starts a new one from the object
(UploadPartCopy, no bytes through this process but the new tail). ``move`` is a server-side copy (UploadPartCopy
in parallel for large objects) and a delete; deleting a path also aborts the multipart uploads under it, so a
purged upload leaves nothing behind in the store.

Hidden names start with ``.``, which no driver path component does, so they are never listed or read as data.

A store that cannot be reached, refuses the keys or fails (5xx) raises OSError (ECONNREFUSED, EACCES, EIO): the
server answers it as the storage fault it is (507, one log line), as it does a full disk. Listings are the
store's: on SeaweedFS an emptied prefix lingers in delimiter listings for a while (a tag listing looks each tag
up and skips one that is gone; the catalog can name a repository emptied by a collection until the store forgets
the prefix).
"""

from __future__ import annotations

import builtins
import errno
import functools
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, ParamSpec, TypeVar

from regtool.errors import UsageError
from regtool.server.config import S3_MIN_PART_SIZE, S3Settings
from regtool.server.storage.driver import FileInfo, PathNotFound
from regtool.server.storage.paths import BLOBS, check_path

__all__ = ["MIN_PART_SIZE", "S3Driver", "make_s3_client"]

MIN_PART_SIZE = S3_MIN_PART_SIZE
_P = ParamSpec("_P")
_R = TypeVar("_R")
# Objects up to this size move with one CopyObject; larger ones with parallel UploadPartCopy requests.
COPY_PART_SIZE = 64 * 1024 * 1024
COPY_CONCURRENCY = 8
PRESIGN_SECONDS = 20 * 60
_DELETE_BATCH = 1000
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
# S3's answers as botocore gives them (S3Driver.list shadows the builtin in the class body).
_Records = list[dict[str, Any]]
# Unfinished writes: (key, upload id, bytes held).
_Abandoned = list[tuple[str, str, int]]


def make_s3_client(settings: S3Settings, *, max_connections: int = 64) -> Any:
    """A botocore S3 client for ``settings`` (keys from the settings, else the standard AWS environment)."""
    import botocore.config  # type: ignore[import-untyped]
    import botocore.session  # type: ignore[import-untyped]

    endpoint = settings.endpoint
    if endpoint is not None and "://" not in endpoint:
        endpoint = f"{'https' if settings.secure else 'http'}://{endpoint}"
    config = botocore.config.Config(
        s3={
            "addressing_style": "path" if settings.force_path_style else "auto",
            # The payload is not hashed into the signature: TLS (or loopback) protects it, and hashing every part
            # twice (here and for the digest) would cost a core at line rate.
            "payload_signing_enabled": False,
        },
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=120,
    )
    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        region_name=settings.region,
        endpoint_url=endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        use_ssl=settings.secure if endpoint is None else endpoint.startswith("https://"),
        verify=not settings.skip_verify,
        config=config,
    )


def _as_os_error(exc: Exception) -> OSError | None:
    """The store's failure as the OSError the server reports as a storage fault (one line, 507), or None."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
    )

    if isinstance(exc, EndpointConnectionError):
        return OSError(errno.ECONNREFUSED, f"object store unreachable ({exc})")
    if isinstance(exc, BotoCoreError):
        return OSError(errno.EIO, f"object store request failed ({exc})")
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 403:
            return OSError(errno.EACCES, f"object store refused access ({exc})")
        if isinstance(status, int) and status >= 500:
            return OSError(errno.EIO, f"object store failed ({exc})")
    return None


def _store_call(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report the store's failures (unreachable, refusing, failing) as storage faults, not as bugs (500)."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            fault = _as_os_error(exc)
            if fault is None:
                raise
            raise fault from exc

    return call


def _is_missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code")) in _MISSING or status == 404


class _ObjectReader(io.RawIOBase):
    """An object's body as a raw stream (wrapped in a BufferedReader by ``S3Driver.reader``)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    @_store_call
    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Driver:
    """The registry's files as objects in ``settings.bucket`` under ``settings.root_directory``."""

    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.chunk_size = settings.chunk_size
        self._root = settings.root_directory.strip("/")
        self.client = client if client is not None else make_s3_client(settings)

    # -- keys ------------------------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        check_path(path)
        return f"{self._root}/{path}" if self._root else path

    @staticmethod
    def tail_key(key: str) -> str:
        directory, _, name = key.rpartition("/")
        return f"{directory}/.{name}.tail" if directory else f".{name}.tail"

    # -- start-up ----------------------------------------------------------------------------------------------

    def check_reachable(self) -> None:
        """HeadBucket; UsageError naming the endpoint and bucket when the store cannot be used."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"bucket {self.bucket!r} at {self.settings.endpoint or 'AWS S3'}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            reason = "does not exist" if status == 404 else f"refused access ({status} {code})"
            raise UsageError(f"s3 storage: {where} {reason}") from None
        except BotoCoreError as exc:
            raise UsageError(f"s3 storage: cannot reach {where}: {exc}") from None

    def presigned_url(self, path: str, method: str) -> str:
        """A URL on the store that answers ``method`` (GET or HEAD) for ``path`` without credentials."""
        operation = "head_object" if method == "HEAD" else "get_object"
        url: str = self.client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": self.key(path)}, ExpiresIn=PRESIGN_SECONDS
        )
        return url

    # -- small files -------------------------------------------------------------------------------------------

    @_store_call
    def get_content(self, path: str) -> bytes:
        key = self.key(path)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                raise PathNotFound(f"storage path {path!r} not found") from None
            raise
        with response["Body"] as body:
            data: bytes = body.read()
        return data

    @_store_call
    def put_content(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=data)

    # -- streams -----------------------------------------------------------------------------------------------

    @_store_call
    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        key = self.key(path)
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset:
            request["Range"] = f"bytes={offset}-"
        try:
            response = self.client.get_object(**request)
        except Exception as exc:
            if _is_missing(exc):
                raise PathNotFound(f"storage path {path!r} not found") from None
            if offset and _error_code(exc) == "InvalidRange" and self.stat(path).size == offset:
                return io.BytesIO(b"")
            raise
        return io.BufferedReader(_ObjectReader(response["Body"]), buffer_size=1024 * 1024)

    @_store_call
    def writer(self, path: str, *, append: bool = False) -> S3Writer:
        return S3Writer(self, self.key(path), append=append)

    # -- metadata ----------------------------------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return response

    def _has_children(self, key: str) -> bool:
        response = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{key}/", MaxKeys=1)
        return bool(response.get("Contents"))

    @_store_call
    def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        head = self._head(key)
        if head is not None:
            return FileInfo(path, int(head["ContentLength"]), False, head["LastModified"].timestamp())
        if self._has_children(key):
            return FileInfo(path, 0, True, 0.0)
        # Blob data is only ever the destination of a move, whose multipart copy is no file until it completes:
        # one in progress, or left by an instance that died mid-copy, must not read as a stored blob.
        pending = None if path.startswith(f"{BLOBS}/") else self.pending_upload(key)
        if pending is not None:
            size, modified = pending.progress()
            return FileInfo(path, size, False, modified)
        raise PathNotFound(f"storage path {path!r} not found")

    @_store_call
    def list(self, path: str) -> list[str]:
        prefix = f"{self.key(path)}/"
        names: builtins.list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                names.append(common["Prefix"][len(prefix) :].rstrip("/"))
            for item in page.get("Contents", ()):
                names.append(item["Key"][len(prefix) :])
        found = [name for name in names if name and not name.startswith(".")]
        if not found and not names:
            raise PathNotFound(f"storage directory {path!r} not found")
        return found

    def _keys_under(self, prefix: str) -> Iterator[tuple[str, int]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item["Key"], int(item["Size"])

    # -- move and delete ---------------------------------------------------------------------------------------

    @_store_call
    def move(self, source: str, destination: str) -> None:
        src, dst = self.key(source), self.key(destination)
        head = self._head(src)
        if head is not None:
            self._copy(src, dst, int(head["ContentLength"]))
            self._delete_keys([src])
            return
        moved = False
        for key, size in list(self._keys_under(f"{src}/")):
            self._copy(key, dst + key[len(src) :], size)
            self._delete_keys([key])
            moved = True
        if not moved:
            raise PathNotFound(f"storage path {source!r} not found")

    def _copy(self, source: str, destination: str, size: int) -> None:
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= COPY_PART_SIZE:
            self.client.copy_object(Bucket=self.bucket, Key=destination, CopySource=copy_source)
            return
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=destination)["UploadId"]
        try:
            ranges = [(start, min(start + COPY_PART_SIZE, size) - 1) for start in range(0, size, COPY_PART_SIZE)]

            def copy_part(number: int) -> dict[str, Any]:
                first, last = ranges[number - 1]
                response = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=destination,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={first}-{last}",
                )
                return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

            with ThreadPoolExecutor(min(COPY_CONCURRENCY, len(ranges))) as pool:
                parts = list(pool.map(copy_part, range(1, len(ranges) + 1)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=destination, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self.abort_upload(destination, upload_id)
            raise

    @_store_call
    def delete(self, path: str) -> None:
        key = self.key(path)
        found = False
        if self._head(key) is not None:
            self._delete_keys([key])
            found = True
        under = [k for k, _ in self._keys_under(f"{key}/")]
        if under:
            self._delete_keys(under)
            found = True
        for upload in self.uploads_under(key):
            self.abort_upload(upload["Key"], upload["UploadId"])
            found = True
        tail = self.tail_key(key)
        if self._head(tail) is not None:
            self._delete_keys([tail])
            found = True
        if not found:
            raise PathNotFound(f"storage path {path!r} not found")

    def _delete_keys(self, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            if len(batch) == 1:
                self.client.delete_object(Bucket=self.bucket, Key=batch[0])
                continue
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )

    # -- multipart uploads -------------------------------------------------------------------------------------

    def uploads_under(self, key: str) -> _Records:
        """The multipart uploads in progress for ``key`` itself or any key below it."""
        found: _Records = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for upload in page.get("Uploads", ()):
                if upload["Key"] == key or upload["Key"].startswith(f"{key}/"):
                    found.append(upload)
        return found

    def pending_upload(self, key: str) -> PendingUpload | None:
        """The multipart upload a closed, uncommitted writer of ``key`` left, or None."""
        uploads = [u for u in self.uploads_under(key) if u["Key"] == key]
        if not uploads:
            return None
        uploads.sort(key=lambda u: u["Initiated"])
        return PendingUpload(self, key, uploads[-1]["UploadId"], uploads[-1]["Initiated"].timestamp())

    def abandoned_writes(self, path: str, before: float) -> _Abandoned:
        """The multipart uploads under ``path`` begun before ``before`` (epoch seconds) that no writer finished:
        ``(key, upload id, bytes in its parts)``. A writer killed mid-way leaves one, which no listing shows."""
        found: _Abandoned = []
        for upload in self.uploads_under(path):
            initiated = upload["Initiated"].timestamp()
            if initiated < before:
                pending = PendingUpload(self, upload["Key"], upload["UploadId"], initiated)
                found.append((upload["Key"], upload["UploadId"], sum(int(p["Size"]) for p in pending.parts())))
        return found

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            if not _is_missing(exc):
                raise


def _error_code(exc: Exception) -> str | None:
    from botocore.exceptions import ClientError

    return str(exc.response.get("Error", {}).get("Code")) if isinstance(exc, ClientError) else None


class PendingUpload:
    """A multipart upload in progress: its parts (ListParts) and the tail object waiting to become a part."""

    def __init__(self, driver: S3Driver, key: str, upload_id: str, initiated: float) -> None:
        self.driver = driver
        self.key = key
        self.upload_id = upload_id
        self.initiated = initiated

    def parts(self) -> _Records:
        client = self.driver.client
        found: _Records = []
        paginator = client.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.driver.bucket, Key=self.key, UploadId=self.upload_id):
            found.extend(page.get("Parts", ()))
        return sorted(found, key=lambda p: int(p["PartNumber"]))

    def progress(self) -> tuple[int, float]:
        """Bytes written so far (parts and tail) and when the last of them was written."""
        parts = self.parts()
        size = sum(int(p["Size"]) for p in parts)
        modified = max([self.initiated, *(p["LastModified"].timestamp() for p in parts)])
        tail = self.driver._head(self.driver.tail_key(self.key))
        if tail is not None:
            size += int(tail["ContentLength"])
            modified = max(modified, tail["LastModified"].timestamp())
        return size, modified


class S3Writer:
    """Writes (or continues) one object; see the module docstring for what a closed writer leaves behind."""

    def __init__(self, driver: S3Driver, key: str, *, append: bool) -> None:
        self._driver = driver
        self._client = driver.client
        self._bucket = driver.bucket
        self._key = key
        self._tail = driver.tail_key(key)
        self._chunk = driver.chunk_size
        self._buffer = bytearray()
        self._parts: _Records = []
        self._sent = 0
        self._upload_id: str | None = None
        self._tail_stored = False
        # A whole object at the key (a small file being continued, or one being replaced) must not shadow the
        # parts once there are some: it is deleted when the first part goes out.
        self._shadow = True
        # An object that already exists whole is continued only when something changes (a commit without writes
        # leaves it untouched): ``_base`` is its size until then.
        self._base: int | None = None
        self._done = False
        # Closing a continued file that nothing was written to leaves the store as it is (an empty last chunk).
        self._changed = not append
        if not append:
            self._forget_pending()
            return
        pending = driver.pending_upload(key)
        if pending is not None:
            self._shadow = False
            self._resume(pending)
            return
        head = driver._head(key)
        if head is not None:
            self._base = int(head["ContentLength"])
        else:
            self._changed = True  # appending creates the file, as opening it for appending does

    # -- the state a previous writer left ----------------------------------------------------------------------

    def _forget_pending(self) -> None:
        for upload in self._driver.uploads_under(self._key):
            if upload["Key"] == self._key:
                self._driver.abort_upload(self._key, upload["UploadId"])
        if self._driver._head(self._tail) is not None:
            self._driver._delete_keys([self._tail])

    def _resume(self, pending: PendingUpload) -> None:
        self._upload_id = pending.upload_id
        parts = pending.parts()
        self._parts = [{"PartNumber": int(p["PartNumber"]), "ETag": p["ETag"]} for p in parts]
        self._sent = sum(int(p["Size"]) for p in parts)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._tail)
        except Exception as exc:
            if not _is_missing(exc):
                raise
        else:
            with response["Body"] as body:
                self._buffer = bytearray(body.read())
            self._tail_stored = True

    def _continue_object(self, limit: int) -> None:
        """Turn the whole object ``key`` into writer state: full parts copied in the store, the rest buffered."""
        full = (limit // self._chunk) * self._chunk
        self._base = None
        self._parts, self._sent, self._upload_id = [], 0, None
        if full:
            self._upload_id = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)["UploadId"]
            for start in range(0, full, self._chunk):
                response = self._client.upload_part_copy(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    PartNumber=len(self._parts) + 1,
                    CopySource={"Bucket": self._bucket, "Key": self._key},
                    CopySourceRange=f"bytes={start}-{start + self._chunk - 1}",
                )
                self._parts.append({"PartNumber": len(self._parts) + 1, "ETag": response["CopyPartResult"]["ETag"]})
            self._sent = full
        self._buffer = bytearray()
        if limit > full:
            response = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={full}-{limit - 1}")
            with response["Body"] as body:
                self._buffer = bytearray(body.read())
        if self._upload_id is not None:
            # The object now lives on as the upload's parts; while it is in progress only they count.
            self._driver._delete_keys([self._key])
            self._shadow = False

    # -- writing -----------------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._base if self._base is not None else self._sent + len(self._buffer)

    @_store_call
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._changed = True
        if self._base is not None:
            self._continue_object(self._base)
        view = memoryview(data)
        while view:
            room = self._chunk - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= self._chunk:
                self._send_part()

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)["UploadId"]
            if self._shadow:
                self._driver._delete_keys([self._key])
                self._shadow = False
        number = len(self._parts) + 1
        if self._tail_stored:
            # The tail's bytes open this part: its object goes first, so a crash before the part is in counts
            # them nowhere (the client sends them again from the offset it is told) and never twice.
            self._driver._delete_keys([self._tail])
            self._tail_stored = False
        # The buffer itself is the body (no copy): one part in memory per writer, replaced once it is sent.
        response = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=self._buffer
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._sent += len(self._buffer)
        self._buffer = bytearray()

    @_store_call
    def truncate(self, size: int) -> None:
        if size > self.size:
            raise ValueError(f"cannot truncate {self._key} from {self.size} up to {size} bytes")
        if size == self.size:
            return
        self._changed = True
        if self._base is not None:
            if size < self._base:
                self._continue_object(size)
            return
        if size >= self._sent:
            del self._buffer[size - self._sent :]
            return
        # The cut falls in bytes already sent as parts, which S3 cannot read back: complete what is there and
        # continue from the object, as any writer would.
        self._complete()
        self._continue_object(size)

    def _complete(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._buffer)
        else:
            if self._buffer or not self._parts:
                self._send_part()
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
            if self._tail_stored:
                self._driver._delete_keys([self._tail])
        self._base = self._sent + len(self._buffer)
        self._parts, self._sent, self._upload_id, self._buffer = [], 0, None, bytearray()
        self._tail_stored = False

    @_store_call
    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        if self._base is None:
            self._complete()

    @_store_call
    def close(self) -> None:
        if self._done:
            return
        self._done = True
        if self._base is not None or not self._changed:
            return
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._buffer)
            return
        if self._buffer:
            self._client.put_object(Bucket=self._bucket, Key=self._tail, Body=self._buffer)
        elif self._tail_stored:
            self._driver._delete_keys([self._tail])
