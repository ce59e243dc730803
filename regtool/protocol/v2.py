"""Registry v2 / OCI distribution routes and headers, shared by the client's URL builder and the server's router.

Route templates use ``{name}`` for a repository name (which may contain ``/``); the server matches them from
the right (protocols.md §4.1).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

__all__ = [
    "API_VERSION",
    "API_VERSION_HEADER",
    "CONTENT_DIGEST_HEADER",
    "OCI_CHUNK_MIN_LENGTH_HEADER",
    "OCI_FILTERS_APPLIED_HEADER",
    "OCI_SUBJECT_HEADER",
    "ROUTES",
    "UPLOAD_UUID_HEADER",
    "blob_path",
    "catalog_path",
    "format_link_next",
    "manifest_path",
    "parse_link_next",
    "referrers_path",
    "tags_path",
    "upload_path",
    "uploads_path",
]

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
CONTENT_DIGEST_HEADER = "Docker-Content-Digest"
UPLOAD_UUID_HEADER = "Docker-Upload-UUID"
OCI_SUBJECT_HEADER = "OCI-Subject"
OCI_FILTERS_APPLIED_HEADER = "OCI-Filters-Applied"
OCI_CHUNK_MIN_LENGTH_HEADER = "OCI-Chunk-Min-Length"

# name -> path template; the server builds its router from this table.
ROUTES: dict[str, str] = {
    "base": "/v2/",
    "catalog": "/v2/_catalog",
    "tags": "/v2/{name}/tags/list",
    "manifest": "/v2/{name}/manifests/{reference}",
    "blob": "/v2/{name}/blobs/{digest}",
    "uploads": "/v2/{name}/blobs/uploads/",
    "upload": "/v2/{name}/blobs/uploads/{uuid}",
    "referrers": "/v2/{name}/referrers/{digest}",
}


def _q(component: str) -> str:
    # Names keep their '/', references and digests keep ':'.
    return quote(component, safe="/:@")


def manifest_path(name: str, reference: str) -> str:
    return f"/v2/{_q(name)}/manifests/{_q(reference)}"


def blob_path(name: str, digest: str) -> str:
    return f"/v2/{_q(name)}/blobs/{_q(digest)}"


def uploads_path(name: str, **query: str) -> str:
    path = f"/v2/{_q(name)}/blobs/uploads/"
    return f"{path}?{urlencode(query)}" if query else path


def upload_path(name: str, uuid: str) -> str:
    return f"/v2/{_q(name)}/blobs/uploads/{_q(uuid)}"


def tags_path(name: str, n: int | None = None, last: str | None = None) -> str:
    return _paged(f"/v2/{_q(name)}/tags/list", n, last)


def catalog_path(n: int | None = None, last: str | None = None) -> str:
    return _paged("/v2/_catalog", n, last)


def referrers_path(name: str, digest: str, artifact_type: str | None = None) -> str:
    path = f"/v2/{_q(name)}/referrers/{_q(digest)}"
    return f"{path}?{urlencode({'artifactType': artifact_type})}" if artifact_type else path


def _paged(path: str, n: int | None, last: str | None) -> str:
    query: dict[str, str] = {}
    if n is not None:
        query["n"] = str(n)
    if last is not None:
        query["last"] = last
    return f"{path}?{urlencode(query)}" if query else path


def format_link_next(path: str) -> str:
    """The RFC 8288 ``Link`` header value pointing at the next page."""
    return f'<{path}>; rel="next"'


_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def parse_link_next(value: str | None) -> str | None:
    """The target of ``rel="next"`` in a ``Link`` header, or None."""
    if not value:
        return None
    for match in _LINK_RE.finditer(value):
        for param in match.group(2).split(";"):
            key, _, rel = param.partition("=")
            # rel may hold several space-separated relation types (RFC 8288 §3.3).
            if key.strip().lower() == "rel" and "next" in rel.strip().strip('"').lower().split():
                return match.group(1)
    return None
