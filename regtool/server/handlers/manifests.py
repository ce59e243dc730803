"""Manifests: end-3 (GET/HEAD), end-7 (PUT), end-9 (DELETE), by tag or by digest, stored byte-exact.

Accepted on PUT: Docker schema2, Docker manifest list, OCI manifest, OCI index. Docker schema1 is refused with
MANIFEST_INVALID (it is deprecated and cannot be verified without its signatures' keys).
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from regtool import grammar
from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.manifest import Manifest, ManifestError, parse_manifest
from regtool.protocol import v2
from regtool.protocol.errcodes import ErrorCode
from regtool.server.auth.base import Access
from regtool.server.errors import ApiError
from regtool.server.handlers.base import (
    authorize,
    context,
    empty,
    parse_digest,
    repository,
    require_deletable,
    require_writable,
    run_sync,
)

__all__ = ["delete_manifest", "get_manifest", "put_manifest"]


def _reference(request: Request, *, lookup: bool) -> str | Digest:
    """The ``{reference}``: a Digest when it contains ':', else a validated tag.

    A lookup (GET, HEAD, DELETE) of a name that is not even a valid tag answers 404 MANIFEST_UNKNOWN, as
    distribution does (its route does not match) and the OCI conformance suite expects: no such manifest can
    exist. Only a PUT, which would create it, is told TAG_INVALID.
    """
    reference = str(request.path_params["reference"])
    if ":" in reference:
        return parse_digest(reference)
    if not grammar.is_valid_tag(reference):
        if lookup:
            raise ApiError(
                ErrorCode.MANIFEST_UNKNOWN, f"no manifest {reference[:140]!r}: not a valid tag", detail=reference[:256]
            )
        raise ApiError(ErrorCode.TAG_INVALID, f"invalid tag {reference[:140]!r}", detail=reference[:256])
    return reference


async def get_manifest(request: Request) -> Response:
    """GET/HEAD ``/v2/<name>/manifests/<reference>``: the stored bytes with their media type and digest.

    Nothing is converted (distribution would rewrite schema2 to schema1 for an old client). When ``Accept``
    names manifest media types and the stored one is not among them, the answer is 404 MANIFEST_UNKNOWN
    (protocols.md §4.6); an absent Accept, ``*/*`` or only non-manifest types get the stored manifest.
    """
    name = repository(request)
    reference = _reference(request, lookup=True)
    await authorize(request, Access.pull(name))
    proxy = context(request).proxy
    stale = False
    if proxy is not None:
        cached = await proxy.manifest(request, name, reference)
        stored, stale = cached.stored, cached.stale
    else:
        stored = await run_sync(context(request).registry.get_manifest, name, str(reference))
    if not _acceptable(stored.media_type, request.headers.getlist("accept")):
        raise ApiError(
            ErrorCode.MANIFEST_UNKNOWN,
            f"manifest {reference} of {name} is {stored.media_type}, which the Accept header does not list",
            detail={"mediaType": stored.media_type},
        )
    headers = {
        v2.CONTENT_DIGEST_HEADER: str(stored.digest),
        "ETag": f'"{stored.digest}"',
        "Content-Length": str(len(stored.raw)),
    }
    if stale:
        from regtool.server.proxy.store import STALE_WARNING

        headers["Warning"] = STALE_WARNING
    body = b"" if request.method == "HEAD" else stored.raw
    return Response(body, headers=headers, media_type=stored.media_type)


def _acceptable(media_type: str, accept_headers: list[str]) -> bool:
    listed = {item.split(";")[0].strip().lower() for header in accept_headers for item in header.split(",")}
    if not listed & mt.MANIFEST_TYPES or "*/*" in listed:
        return True
    return media_type.lower() in listed


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = ApiError(ErrorCode.MANIFEST_TOO_LARGE, f"manifest is larger than the limit of {limit} bytes")
    declared = grammar.parse_decimal(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _parse(raw: bytes, content_type: str | None) -> Manifest:
    try:
        manifest = parse_manifest(raw, content_type)
    except ManifestError as exc:
        raise ApiError(ErrorCode.MANIFEST_INVALID, f"invalid manifest: {exc}") from None
    if manifest.kind == "schema1":
        raise ApiError(ErrorCode.MANIFEST_INVALID, "schema1 manifests are not accepted; push schema2 or OCI")
    return manifest


async def put_manifest(request: Request) -> Response:
    """PUT ``/v2/<name>/manifests/<reference>``: validate, store byte-exact, tag -> 201 (+ OCI-Subject)."""
    name = repository(request)
    reference = _reference(request, lookup=False)
    await authorize(request, Access.push(name), Access.pull(name))
    require_writable(request, "push manifests")
    raw = await _read_limited(request, context(request).config.max_manifest_bytes)
    # Up to max_manifest_bytes of JSON to parse and hash: in a worker thread, off the event loop.
    manifest = await run_sync(_parse, raw, request.headers.get("content-type"))
    tag: str | None = None
    if isinstance(reference, Digest):
        actual = manifest.digest
        if reference.algorithm != actual.algorithm:
            actual = await run_sync(Digest.of, raw, reference.algorithm)
        if actual != reference:
            raise ApiError(
                ErrorCode.DIGEST_INVALID,
                f"manifest body hashes to {actual}, not the reference {reference}",
                detail={"expected": str(reference), "actual": str(actual)},
            )
        manifest = dataclasses.replace(manifest, digest=reference)
    else:
        tag = reference
    await run_sync(context(request).registry.put_manifest, name, manifest, tag)
    headers = {
        "Location": v2.manifest_path(name, str(manifest.digest)),
        v2.CONTENT_DIGEST_HEADER: str(manifest.digest),
    }
    if manifest.subject is not None:
        headers[v2.OCI_SUBJECT_HEADER] = str(manifest.subject.digest)
    return empty(201, headers)


async def delete_manifest(request: Request) -> Response:
    """DELETE ``/v2/<name>/manifests/<reference>``: a tag removes the tag only; a digest removes the manifest."""
    name = repository(request)
    reference = _reference(request, lookup=True)
    await authorize(request, Access.delete(name))
    require_deletable(request, "delete manifests")
    registry = context(request).registry
    if isinstance(reference, Digest):
        await run_sync(registry.delete_manifest, name, reference)
    else:
        await run_sync(registry.delete_tag, name, reference)
    return empty(202)
