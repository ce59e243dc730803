"""end-12a/12b: ``GET /v2/<name>/referrers/<digest>[?artifactType=]``, always an OCI index (200)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from regtool import mediatypes as mt
from regtool.protocol import v2
from regtool.server.auth.base import Access
from regtool.server.handlers.base import authorize, context, json_response, parse_digest, repository, run_sync

__all__ = ["list_referrers"]


async def list_referrers(request: Request) -> Response:
    """The manifests whose ``subject`` is the digest; unknown digests and repositories give an empty index."""
    name = repository(request)
    subject = parse_digest(request.path_params["digest"])
    await authorize(request, Access.pull(name))
    descriptors = await run_sync(context(request).registry.referrers, name, subject)
    headers = {}
    artifact_type = request.query_params.get("artifactType")
    if artifact_type is not None:
        descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
        headers[v2.OCI_FILTERS_APPLIED_HEADER] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    return json_response(index, headers=headers, media_type=mt.OCI_INDEX)
