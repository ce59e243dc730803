"""Operations endpoints: ``/debug/health`` for balancers and ``/metrics`` for Prometheus (``health.py``,
``metrics.py`` say what they report), on the main port and on the debug listener (``app.create_debug_app``).
Neither asks the access controller: a balancer and a scraper carry no registry credentials. ``/metrics`` is
answered on the debug listener to anyone, and on the main port only to loopback peers when there is no debug
listener (``metrics.py`` says why)."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol.errcodes import ErrorCode
from regtool.server.errors import ApiError
from regtool.server.handlers.base import context, json_response, run_sync
from regtool.server.metrics import CONTENT_TYPE

__all__ = ["health", "metrics"]


async def health(request: Request) -> Response:
    """200 ``{}`` while storage answers; 503 with the failing check and its error after ``threshold`` failures."""
    checker = context(request).health
    failures = {} if checker is None else await run_sync(checker.status)
    return json_response(failures, status=503 if failures else 200, headers={"Cache-Control": "no-store"})


async def metrics(request: Request) -> Response:
    """The Prometheus text format; 404 (as an unknown path) for peers off loopback or with metrics off."""
    collected = context(request).metrics
    if getattr(request.app.state, "debug_listener", False):
        allowed = True
    else:
        # With a debug listener configured, the main port never answers: it may be behind a balancer.
        allowed = context(request).config.debug_addr is None and _from_loopback(request)
    if collected is None or not allowed:
        raise ApiError(ErrorCode.UNSUPPORTED, f"no such endpoint {request.url.path}", status=404)
    body = await run_sync(collected.render)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _from_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False
