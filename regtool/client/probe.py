"""Which registry APIs a host speaks: v2, v1, both or neither, with the evidence (protocols.md §3).

1. For each allowed scheme (https first; http only for loopback hosts or when insecure/plain-http), GET /v2/
   without credentials. A transport error moves on to the next scheme; the first HTTP response fixes the
   scheme (no downgrade to http once https answered). v2 is present when the response carries
   ``Docker-Distribution-API-Version: registry/2.0``, or is a 401 with a v2 error envelope, or a 200 with a JSON
   object body. A 401's WWW-Authenticate challenge is recorded.
2. GET /v1/_ping on that scheme: a 200 JSON response or an ``X-Docker-Registry-Version`` /
   ``X-Docker-Registry-Standalone`` header means v1; the standalone flag follows the engine's reading.

A 408/429/5xx answer is retried as the client's retry policy says (a transport error is not: it moves on to the
next scheme). Nothing is hidden: a 5xx or a transport error is kept as evidence and never turned into a verdict
by itself.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from regtool.client.net.challenge import ChallengeError, parse_challenges
from regtool.client.net.transport import first_in_order, redact_url
from regtool.client.results import ProbeEvidence, ProbeResult, V1Info, V2Info
from regtool.client.v2.api import RegistryAPI
from regtool.errors import TransportError
from regtool.protocol import v1 as v1proto
from regtool.protocol import v2 as v2proto
from regtool.protocol.errcodes import decode_v2_errors
from regtool.reference import registry_api_host

__all__ = ["probe_registry"]

_BODY_LIMIT = 16 << 10
_SHOWN_HEADERS = (
    v2proto.API_VERSION_HEADER,
    "WWW-Authenticate",
    v1proto.VERSION_HEADER,
    v1proto.STANDALONE_HEADER,
    "Content-Type",
    "Server",
    "Retry-After",
)


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


async def _get(api: RegistryAPI, url: str) -> tuple[ProbeEvidence, bytes]:
    try:
        response = await api.send("GET", url, what="probe", expect=None, auth=False, retry=False, stream=True)
    except TransportError as exc:
        return ProbeEvidence(url=url, error=str(exc).split(": ", 1)[-1]), b""
    try:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _BODY_LIMIT:
                break
    except httpx.HTTPError:  # a broken body is evidence, not a failure of the probe
        body = b""
    finally:
        await response.aclose()
    headers = {name: response.headers[name] for name in _SHOWN_HEADERS if name in response.headers}
    return ProbeEvidence(url=url, status=response.status_code, headers=headers), body


async def _get_retrying(api: RegistryAPI, url: str) -> tuple[ProbeEvidence, bytes]:
    """``_get``, retrying a 408/429/5xx answer as the client's retry policy says (each retry is logged)."""
    attempt = 0
    while True:
        seen, body = await _get(api, url)
        if seen.status is None or not api.retry.allows("GET", seen.status) or api.retry.exhausted(attempt):
            return seen, body
        delay = api.retry.delay(attempt, seen.headers.get("Retry-After"))
        api.retry_log.record(f"GET {redact_url(url)}", attempt=attempt + 1, delay=delay, reason=f"HTTP {seen.status}")
        await asyncio.sleep(delay)
        attempt += 1


def _v2_from(evidence: ProbeEvidence, body: bytes) -> tuple[V2Info, str]:
    status = evidence.status
    version = evidence.headers.get(v2proto.API_VERSION_HEADER)
    has_header = version is not None and v2proto.API_VERSION in version.split()
    envelope = status == 401 and bool(decode_v2_errors(body))
    json_ok = status == 200 and _json_object(body) is not None
    found = has_header or envelope or json_ok
    scheme = realm = service = None
    if found and status == 401:
        for value in [evidence.headers.get("WWW-Authenticate", "")]:
            try:
                challenges = parse_challenges(value)
            except ChallengeError:
                continue
            if challenges:
                scheme = challenges[0].scheme
                realm = challenges[0].params.get("realm")
                service = challenges[0].params.get("service")
    if has_header:
        note = f"{v2proto.API_VERSION_HEADER}: {version}"
    elif envelope:
        note = "401 with a v2 error body"
    elif json_ok:
        note = "200 with a JSON body"
    elif status is not None and status >= 500:
        note = "server error; cannot tell"
    else:
        note = f"no {v2proto.API_VERSION_HEADER} header"
    info = V2Info(found, api_version=version, status=status, auth_scheme=scheme, realm=realm, service=service)
    return info, note


def _v1_from(evidence: ProbeEvidence, body: bytes) -> tuple[V1Info, str]:
    status = evidence.status
    version = evidence.headers.get(v1proto.VERSION_HEADER)
    standalone_header = evidence.headers.get(v1proto.STANDALONE_HEADER)
    data = _json_object(body) if status == 200 else None
    found = data is not None or version is not None or standalone_header is not None
    standalone: bool | None = None
    if found:
        if standalone_header is not None:
            standalone = v1proto.parse_standalone(standalone_header)
        elif data is not None and isinstance(data.get("standalone"), bool):
            standalone = bool(data["standalone"])
        else:
            standalone = True
    if found:
        note = f"v1 ping answered (version {version or 'unknown'})"
    elif status is not None and status >= 500:
        note = "server error; cannot tell"
    else:
        note = "no v1 ping response"
    return V1Info(found, version=version, standalone=standalone, status=status), note


async def probe_registry(api: RegistryAPI, registry: str, *, check_v1: bool = True) -> ProbeResult:
    """Probe ``registry`` (``host[:port]``) through ``api``; see the module docstring for the rules."""
    host = registry_api_host(registry)
    evidence: list[ProbeEvidence] = []
    chosen: str | None = None
    v2 = V2Info(found=False)
    schemes = api.schemes(registry)
    failed: dict[str, ProbeEvidence] = {}

    async def ping(scheme: str) -> tuple[ProbeEvidence, bytes] | None:
        seen, body = await _get_retrying(api, f"{scheme}://{host}/v2/")
        if seen.status is None:
            failed[scheme] = seen
            return None
        return seen, body

    answer = await first_in_order(schemes, ping)
    # The schemes before the one that answered failed; the ones after it were not needed.
    evidence.extend(failed[s] for s in schemes[: schemes.index(answer[0]) if answer else len(schemes)])
    if answer is not None:
        chosen, (seen, body) = answer
        v2, note = _v2_from(seen, body)
        evidence.append(ProbeEvidence(seen.url, seen.status, None, seen.headers, note))
    v1 = V1Info(found=False)
    if chosen is not None and (check_v1 or not v2.found):
        seen, body = await _get_retrying(api, f"{chosen}://{host}/v1/_ping")
        if seen.status is None:
            evidence.append(seen)
        else:
            v1, note = _v1_from(seen, body)
            evidence.append(ProbeEvidence(seen.url, seen.status, None, seen.headers, note))
    if chosen is not None:
        api.remember_base(registry, f"{chosen}://{host}")
    return ProbeResult(registry=registry, scheme=chosen, v2=v2, v1=v1, evidence=tuple(evidence))
