"""The storage tree, as driver paths (``/``-separated, relative to the driver's root).

::

    blobs/<alg>/<hex[:2]>/<hex>/data                    content-addressed blob bytes, shared by every repository
    blobs/<alg>/<hex[:2]>/<hex>/used                    when a write last re-used the stored blob (its time)
    repositories/<name...>/_layers/<alg>/<hex>/link     the blob is in this repository (content: the digest)
    repositories/<name...>/_manifests/revisions/<alg>/<hex>/link
                                                        the manifest is in this repository (content: media type)
    repositories/<name...>/_manifests/tags/<tag>/current/link     the tag (content: the manifest digest)
    repositories/<name...>/_manifests/written           a fresh token after each manifest written (gc reads it)
    repositories/<name...>/_referrers/<alg>/<subject hex>/<alg>-<hex>  a referrer (content: its descriptor JSON)
    uploads/<uuid>/data                                 an upload in progress (never visible as a blob)
    uploads/<uuid>/info                                 {"name": <repository>, "started": <unix time>}
    v1/...                                              the v1 API's image store (storage/v1images.py)

Repository name components never start with ``_`` (the name grammar), so ``_layers`` and friends cannot collide
with a nested repository. Every function here takes values that handlers have already validated, and
``check_path`` is applied again by the drivers, so no request can name a path outside the root.
"""

from __future__ import annotations

import re

from regtool.digest import Digest

__all__ = [
    "BLOBS",
    "REPOSITORIES",
    "UPLOADS",
    "UPLOAD_ID_RE",
    "V1",
    "blob_data",
    "blob_used",
    "check_path",
    "layer_link",
    "layers_dir",
    "manifest_revision",
    "manifests_written",
    "referrer_entry",
    "referrers_dir",
    "repository_dir",
    "tag_link",
    "tags_dir",
    "upload_data",
    "upload_dir",
    "upload_info",
]

BLOBS = "blobs"
REPOSITORIES = "repositories"
UPLOADS = "uploads"
V1 = "v1"

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=+-]*$")
MAX_PATH_LENGTH = 1024


def check_path(path: str) -> str:
    """Return ``path`` if it is a safe relative driver path; raise ValueError otherwise.

    Safe: non-empty components of letters, digits and ``._=+-`` (not starting with ``.``), no ``..``, no NUL,
    not absolute, bounded length.
    """
    if not path or len(path) > MAX_PATH_LENGTH or path.startswith("/"):
        raise ValueError(f"unsafe storage path {path[:80]!r}")
    for component in path.split("/"):
        if not _COMPONENT_RE.match(component):
            raise ValueError(f"unsafe storage path {path[:80]!r}")
    return path


def blob_data(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}/data"


def blob_used(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}/used"


def repository_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers_dir(name: str) -> str:
    return f"{repository_dir(name)}/_layers"


def layer_link(name: str, digest: Digest) -> str:
    return f"{layers_dir(name)}/{digest.algorithm}/{digest.encoded}/link"


def manifest_revision(name: str, digest: Digest) -> str:
    return f"{repository_dir(name)}/_manifests/revisions/{digest.algorithm}/{digest.encoded}/link"


def manifests_written(name: str) -> str:
    return f"{repository_dir(name)}/_manifests/written"


def tags_dir(name: str) -> str:
    return f"{repository_dir(name)}/_manifests/tags"


def tag_link(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}/current/link"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{repository_dir(name)}/_referrers/{subject.algorithm}/{subject.encoded}"


def referrer_entry(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer.algorithm}-{referrer.encoded}"


def upload_dir(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


def upload_data(upload_id: str) -> str:
    return f"{upload_dir(upload_id)}/data"


def upload_info(upload_id: str) -> str:
    return f"{upload_dir(upload_id)}/info"
