"""v1 layer uploads in a collection: the ones still arriving keep their image, the idle ones go.

A v1 layer PUT (``storage/v1images.py``) names its image in ``v1/_uploads/<id>/image``, then streams the layer
into ``v1/_uploads/<id>/data``; a PUT that completes or fails removes the directory. One that stays is either
still receiving bytes or was left by a server that stopped in the middle (killed, a crash, a lost machine).
Activity is the later of the two files' times (on object storage a ``data`` that is still a multipart upload
has the time of its last part); nothing else tells a slow upload from a dead one, so, as for v2 upload sessions,
an upload idle for longer than the grace period goes, with its bytes counted as freed, and its time is read
again right before. While an upload is active its image is live (``v1.py``), so a push whose layer takes longer
than the grace period keeps the image it is completing.

A server from before uploads named their image wrote ``v1/_uploads/<id>`` as a plain file: judged by its time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from regtool.protocol.v1 import IMAGE_ID_RE
from regtool.server.gc.inventory import children
from regtool.server.gc.report import Removal
from regtool.server.storage import paths
from regtool.server.storage.driver import PathNotFound, StorageDriver
from regtool.server.storage.v1images import UPLOAD_DATA, UPLOAD_IMAGE, V1_UPLOADS

__all__ = ["V1Upload", "active_upload_images", "read_v1_upload", "sweep_v1_uploads", "v1_uploads"]


@dataclass(frozen=True, slots=True)
class V1Upload:
    """One layer upload: the image it is for (None when it does not say), when it last did something (unix
    time) and the bytes it holds."""

    upload_id: str
    image_id: str | None
    last_active: float
    size: int


def read_v1_upload(driver: StorageDriver, upload_id: str) -> V1Upload | None:
    """Upload ``upload_id`` as the store has it now, None when it is gone."""
    directory = f"{V1_UPLOADS}/{upload_id}"
    try:
        found = driver.stat(directory)
    except PathNotFound:
        return None
    if not found.is_dir:
        return V1Upload(upload_id, None, found.modified, found.size)
    times: list[float] = []
    image_id: str | None = None
    size = 0
    try:
        named = driver.get_content(f"{directory}/{UPLOAD_IMAGE}").decode(errors="replace")
        times.append(driver.stat(f"{directory}/{UPLOAD_IMAGE}").modified)
        image_id = named if IMAGE_ID_RE.match(named) else None
    except PathNotFound:
        pass
    try:
        data = driver.stat(f"{directory}/{UPLOAD_DATA}")
        times.append(data.modified)
        size = data.size
    except PathNotFound:
        pass
    if not times:
        # Neither file yet: the directory itself (just made by an upload beginning) is all there is to judge by.
        times.append(found.modified)
    return V1Upload(upload_id, image_id, max(times), size)


def v1_uploads(driver: StorageDriver) -> Iterator[V1Upload]:
    """Every v1 layer upload in the store, in the listing's order."""
    for upload_id in children(driver, V1_UPLOADS):
        if not paths.UPLOAD_ID_RE.match(upload_id):
            continue
        upload = read_v1_upload(driver, upload_id)
        if upload is not None:
            yield upload


def active_upload_images(driver: StorageDriver, cutoff: float) -> set[str]:
    """The images whose layer is arriving: an upload naming them did something after ``cutoff``."""
    return {u.image_id for u in v1_uploads(driver) if u.image_id is not None and u.last_active > cutoff}


def sweep_v1_uploads(
    driver: StorageDriver, *, cutoff: float, dry_run: bool, removed: Callable[[Removal], None]
) -> None:
    """Remove every upload idle since ``cutoff`` or longer, each read again just before it goes."""
    for upload in v1_uploads(driver):
        if upload.last_active > cutoff:
            continue
        if not dry_run:
            again = read_v1_upload(driver, upload.upload_id)
            if again is None or again.last_active > cutoff:
                continue  # finished meanwhile, or receiving bytes again
            try:
                driver.delete(f"{V1_UPLOADS}/{upload.upload_id}")
            except PathNotFound:
                continue
            upload = again
        removed(Removal("v1-upload", upload.upload_id, size=upload.size))
