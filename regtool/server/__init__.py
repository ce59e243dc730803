"""``regtool serve``: a registry speaking v2 / OCI distribution (and v1), on Starlette + uvicorn.

Layers: ``config`` -> ``app.create_app`` -> ``routes`` -> ``handlers/*`` -> ``storage.registry`` over a storage
driver, with an access controller (``auth``) asked before every operation.
"""

from __future__ import annotations

from regtool.server.app import create_app
from regtool.server.config import RequestEvent, ServerConfig

__all__ = ["RequestEvent", "ServerConfig", "create_app"]
