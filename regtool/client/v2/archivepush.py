"""Push a docker-archive: each layer uploaded while it is being gzipped, the manifest built once all are up.

A docker-archive holds uncompressed layers, so a push must gzip them, and their digests (which every blob upload
and the manifest name) are known only once compressed. Compressing everything first and uploading afterwards costs
the sum of the two; here a layer still being compressed goes up as a stream, so the push costs about the larger
of them (skopeo does the same):

1. ``open_docker_archive`` checks the archive. A layer whose compressed digest this machine remembers
   (``layermemo``: diff_id -> gzip digest, for this compressor build) and the target has (HEAD) is neither
   compressed nor sent. ``layers.start()`` gzips the others in threads (one per core), each into a
   ``GrowingBlob`` in the work directory.
2. For each layer, once its compression has begun: ``POST`` an upload session, then ``PATCH`` requests whose
   bodies follow the growing file (``Transfer-Encoding: chunked``, no ``Content-Range``: a stream the registry
   appends, at most ``_STREAM_PATCH`` or ``chunk_size`` bytes per request, whichever is smaller, or the
   registry's ``OCI-Chunk-Min-Length`` when larger),
   then, once the layer's tar matched its diff_id, ``PUT ?digest=`` with the digest the compressor computed. A
   layer compressed before its turn came takes the ordinary upload (step 3).
3. The schema2 manifest is built over the compressed layers (the same bytes as ``read_docker_archive``'s:
   deterministic for a given regtool version), and ``V2Pusher.push_source`` pushes the config, any layer not
   streamed, and the manifest, which is put last.

A stream cut by the network or refused by the registry is not retried as a stream: its session is cancelled, and
the layer, whose compressed bytes are whole in the work directory by then, takes the ordinary upload of step 3
(HEAD, retries, resumable sessions). A damaged archive or a layer not matching its diff_id cancels every stream,
and no manifest is put.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from regtool.client.layermemo import LayerMemo, Remembered
from regtool.client.net.connections import BodySender
from regtool.client.tasks import run_bounded
from regtool.client.threads import in_thread, shielded
from regtool.client.v2.upload import (
    READ_SIZE,
    Uploaded,
    check_stored_digest,
    chunk_min_length,
    upload_location,
    with_digest,
)
from regtool.digest import Digest
from regtool.errors import NotFoundError, ProtocolError, RegistryError, TransportError
from regtool.image.compression import GZIP_VARIANT, GzipResult
from regtool.image.docker_archive import DockerArchiveSource, OpenedArchive, open_docker_archive
from regtool.image.growing_blob import GrowingBlob
from regtool.protocol import v2
from regtool.protocol.ranges import parse_upload_progress
from regtool.reference import Reference

if TYPE_CHECKING:
    from regtool.client.results import PushResult
    from regtool.client.v2.push import V2Pusher

__all__ = ["push_archive"]

# A layer whose tar is at most this size is simply waited for: it compresses in milliseconds, and the ordinary
# upload can then skip it when the registry has it.
_STREAM_MIN = 4 << 20
# The most a stream sends in one PATCH. A registry writes each PATCH out as it ends (distribution's filesystem
# driver fsyncs the upload there): in requests of this size its disk works while the layer goes on arriving,
# where one PATCH of the whole layer left all of it to a wait at the end.
_STREAM_PATCH = 64 << 20
# How often a stream's sending thread reports its progress to the event loop (each report is a call scheduled there).
_REPORT_EVERY = 4 << 20


async def push_archive(
    pusher: V2Pusher,
    path: Path,
    archive_ref: str | None,
    ref: Reference,
    *,
    mount_from: Sequence[str] = (),
    started: float | None = None,
) -> PushResult:
    """Push the image ``archive_ref`` (or the only one) of the docker-archive at ``path`` to ``ref``."""
    started = time.monotonic() if started is None else started
    opened = await in_thread(open_docker_archive, path, archive_ref)
    source = None
    try:
        memo = LayerMemo(GZIP_VARIANT)
        base = await pusher.api.base_url(ref.registry)
        pusher.api.preconnect(base, len(opened.diff_ids))
        known = await _present_layers(pusher, opened, ref, memo)
        opened.layers.start(known)
        streamer = _LayerStreamer(pusher, opened, ref, memo)
        streamer.streamed.update((index, Uploaded("skipped")) for index in known)
        await run_bounded(range(len(opened.diff_ids)), streamer.stream, pusher.jobs)
        source = await in_thread(opened.source)
        pairs = zip(opened.diff_ids, source.root.layers, strict=True)
        remembered = {Digest.parse(diff_id): Remembered(layer.digest, layer.size) for diff_id, layer in pairs}
        await in_thread(memo.put_all, remembered)
        streamed = {source.root.layers[index].digest: outcome for index, outcome in streamer.streamed.items()}
        result = await pusher.push_source(source, ref, mount_from=mount_from, started=started, uploaded=streamed)
        # A stream handed over to the ordinary upload counts as a retry of its layer.
        return dataclasses.replace(result, retries=result.retries + streamer.handed_over)
    finally:
        # Shielded: a cancelled push must still stop the compressor threads and remove the work directory.
        await shielded(in_thread(_close, opened, source))


def _close(opened: OpenedArchive, source: DockerArchiveSource | None) -> None:
    opened.close()
    if source is not None:
        source.close()


async def _present_layers(
    pusher: V2Pusher, opened: OpenedArchive, ref: Reference, memo: LayerMemo
) -> dict[int, GzipResult]:
    """The layers whose compressed blob this machine remembers and the target has (HEAD): no need to compress
    or send them. Their results carry the config's diff_id, which the remembered blob was compressed from."""
    found: dict[int, GzipResult] = {}

    async def one(index: int) -> None:
        text = opened.diff_ids[index]
        diff_id = Digest.parse(text) if Digest.is_valid(text) else None
        remembered = None if diff_id is None else await in_thread(memo.get, diff_id)
        if diff_id is None or remembered is None:
            return
        size = await pusher.api.blob_size(ref.registry, ref.repository, remembered.digest)
        if size in {remembered.size, -1}:
            found[index] = GzipResult(remembered.digest, remembered.size, diff_id, opened.layer_sizes[index])

    await run_bounded(range(len(opened.diff_ids)), one, pusher.jobs)
    return found


class _LayerStreamer:
    """Uploads an opened archive's layers as they compress; ``streamed`` holds the layers it finished."""

    def __init__(self, pusher: V2Pusher, opened: OpenedArchive, ref: Reference, memo: LayerMemo) -> None:
        self.api = pusher.api
        self.memo = memo
        self.progress = pusher.progress
        self.chunk_size = pusher.uploader.chunk_size
        self.opened = opened
        self.ref = ref
        self.streamed: dict[int, Uploaded] = {}
        self.handed_over = 0

    async def stream(self, index: int) -> None:
        if index in self.streamed:
            return
        blob = self.opened.layers.blobs[index]
        cancel = threading.Event()
        try:
            if self.opened.layer_sizes[index] <= _STREAM_MIN:
                await in_thread(blob.result, cancel, abandon_on_cancel=True)
                return
            await in_thread(blob.wait_started, cancel, abandon_on_cancel=True)
            if blob.done:
                return
            await self._stream(index, blob, cancel)
        finally:
            cancel.set()

    async def _stream(self, index: int, blob: GrowingBlob[GzipResult], cancel: threading.Event) -> None:
        key = f"layer {index}"
        diff_id = self.opened.diff_ids[index]
        what = f"streamed upload of layer {self.opened.layers.names[index]} to {self.ref.repository_ref}"
        self.progress.start(key, Digest.parse(diff_id).short if Digest.is_valid(diff_id) else key, None)
        base = await self.api.base_url(self.ref.registry)
        location = ""
        try:
            response = await self.api.send(
                "POST", base + v2.uploads_path(self.ref.repository), what=what, expect=(202,)
            )
            location = upload_location(response, what)
            # The registry's smallest chunk raises ours, as for any chunked upload.
            limit = max(min(self.chunk_size or _STREAM_PATCH, _STREAM_PATCH), chunk_min_length(response))
            offset = 0
            while True:
                body = _FollowingBody(blob, offset, limit, cancel, lambda n: self.progress.advance(key, n))
                response = await self._patch(location, what, body)
                location = upload_location(response, what)
                held = parse_upload_progress(response.headers.get("Range"))
                offset = held if held is not None else offset + body.sent
                if body.at_end:
                    break
            result = await in_thread(self.opened.layer_result, index, cancel, abandon_on_cancel=True)
            if offset != result.size:
                raise ProtocolError(f"{what}: the registry holds {offset} of the layer's {result.size} bytes")
            response = await self.api.send("PUT", with_digest(location, result.digest), what=what, expect=(201, 204))
            check_stored_digest(response, result.digest, what)
            # Remembered at once: a push interrupted after this layer skips it when run again.
            remembered = {result.diff_id: Remembered(result.digest, result.size)}
            await in_thread(self.memo.put_all, remembered)
        except (TransportError, RegistryError, NotFoundError) as exc:
            # The compressed bytes stay in the work directory: the ordinary upload takes the layer from there.
            await self._cancel(location)
            self.progress.finish(key, status="failed")
            self.api.retry_log.record(what, attempt=1, delay=0.0, reason=f"{exc}; uploading it from its file")
            self.handed_over += 1
            return
        except BaseException:
            await self._cancel(location)
            self.progress.finish(key, status="failed")
            raise
        self.streamed[index] = Uploaded("uploaded", result.size)
        self.progress.finish(key)

    async def _patch(self, location: str, what: str, body: _FollowingBody) -> httpx.Response:
        """One streamed PATCH (its body told of progress by the sending thread itself)."""
        return await self.api.send(
            "PATCH",
            location,
            what=what,
            headers={"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
            expect=(202, 204),
            retry=False,
            body_sender=body.sender,
        )

    async def _cancel(self, location: str) -> None:
        """Drop a session this stream opened (best effort: an abandoned one is purged by the registry anyway)."""
        if not location:
            return
        with contextlib.suppress(Exception):
            await shielded(self.api.send("DELETE", location, what="cancel upload", expect=None, retry=False))


class _FollowingBody:
    """One PATCH body: the growing blob from ``offset``, at most ``limit`` bytes, in HTTP/1.1 chunks.

    The sender runs in the exchange's worker thread and is called again from the start when the request is sent
    again (a 401's token, a redirect). ``at_end``: the blob ended within this body.
    """

    def __init__(
        self,
        blob: GrowingBlob[GzipResult],
        offset: int,
        limit: int | None,
        cancel: threading.Event,
        advance: Callable[[int], None],
    ) -> None:
        self._blob = blob
        self._offset = offset
        self._limit = limit
        self._cancel = cancel
        self._advance = advance
        # Made on the event loop; the sender runs in a worker thread and tells the progress there.
        self._loop = asyncio.get_running_loop()
        self._reported = 0
        self.sent = 0
        self.at_end = False

    @property
    def sender(self) -> BodySender:
        return self._send

    def _send(self, conn: http.client.HTTPConnection) -> None:
        self.sent = 0
        self.at_end = False
        view = memoryview(bytearray(READ_SIZE))
        with self._blob.follow(self._offset, self._cancel) as reader:
            while self._limit is None or self.sent < self._limit:
                room = len(view) if self._limit is None else min(len(view), self._limit - self.sent)
                n = reader.readinto(view[:room])
                if not n:
                    self.at_end = True
                    break
                conn.send(b"%x\r\n" % n)
                conn.send(view[:n])
                conn.send(b"\r\n")
                self.sent += n
                self._report(_REPORT_EVERY)
        conn.send(b"0\r\n\r\n")
        self._report(0)

    def _report(self, step: int) -> None:
        """Tell the progress (on the event loop) of the bytes sent beyond what it was told, every ``step`` bytes.
        A request sent again counts from its start, so what a repeat sends again is not told twice."""
        if self.sent > self._reported + step:
            self._loop.call_soon_threadsafe(self._advance, self.sent - self._reported)
            self._reported = self.sent
