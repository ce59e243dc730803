"""The web view of ``regtool serve``: server-rendered HTML pages for browsers (``ServerConfig.web``).

``views`` (routes and pages), ``model`` (what the pages show, read through the registry store), ``access`` (the
registry's access controller as the pages use it), ``csrf`` (form protection), ``templates/`` (Jinja2) and
``static/style.css``. No JavaScript is needed; nothing is fetched from outside the server.
"""

from __future__ import annotations

from regtool.server.web.views import web_routes

__all__ = ["web_routes"]
