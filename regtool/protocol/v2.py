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
    "path",
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

# name -> path template; the server builds its router from this table and the client its URLs (``path``).
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


def path(route: str, **params: str) -> str:
    """The path of ``route`` with its parameters filled in: names keep their ``/``, references and digests ``:``."""
    return ROUTES[route].format_map({key: quote(value, safe="/:@") for key, value in params.items()})


def manifest_path(name: str, reference: str) -> str:
    return path("manifest", name=name, reference=reference)


def blob_path(name: str, digest: str) -> str:
    return path("blob", name=name, digest=digest)


def uploads_path(name: str, **query: str) -> str:
    uploads = path("uploads", name=name)
    return f"{uploads}?{urlencode(query)}" if query else uploads


def upload_path(name: str, uuid: str) -> str:
    return path("upload", name=name, uuid=uuid)


def tags_path(name: str, n: int | None = None, last: str | None = None) -> str:
    return _paged(path("tags", name=name), n, last)


def catalog_path(n: int | None = None, last: str | None = None) -> str:
    return _paged(path("catalog"), n, last)


def referrers_path(name: str, digest: str, artifact_type: str | None = None) -> str:
    referrers = path("referrers", name=name, digest=digest)
    return f"{referrers}?{urlencode({'artifactType': artifact_type})}" if artifact_type else referrers


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
