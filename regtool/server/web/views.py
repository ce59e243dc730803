"""The pages: repositories, a repository's tags, one image (with its referrers), deletes, sign-in, the stylesheet.

::

    /                                   repositories the visitor may pull (?q= filters, ?page=)
    /repo/<name>                        tags: digest, media type, total size, platforms, pushed (?q=, ?page=)
    /repo/<name>/-/manifest/<ref>       one image or index by tag or digest: config, layers, platforms, referrers
    /repo/<name>/-/delete               POST (form with a CSRF token): a tag, or a manifest by digest
    /-/login                            401 with a Basic challenge until the browser sends valid credentials
    /-/static/style.css

all under the configured prefix. ``-`` can never be a repository name component, so these paths cannot be read
as a repository's. The pages are plain HTML forms and links: they work without JavaScript (the repository filter
box adds an inline script that filters as you type, under a nonce-based Content-Security-Policy). Every error,
bad input included, is an HTML page with the status the API would give.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from regtool import grammar
from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import InvalidDigest
from regtool.protocol.errcodes import ErrorCode
from regtool.reference import is_loopback_host
from regtool.server.auth.base import Access
from regtool.server.config import ServerConfig
from regtool.server.context import ServerContext
from regtool.server.errors import ApiError
from regtool.server.web import model
from regtool.server.web.access import WebAccess
from regtool.server.web.csrf import CsrfGuard

__all__ = ["WebView", "web_routes"]

_MAX_FORM_BYTES = 16 * 1024
_MAX_QUERY = 200
_MEDIA_TYPE_NAMES = {
    mt.OCI_INDEX: "OCI index",
    mt.OCI_MANIFEST: "OCI manifest",
    mt.DOCKER_MANIFEST_LIST: "Docker manifest list",
    mt.DOCKER_MANIFEST_V2: "Docker manifest v2",
    mt.DOCKER_SCHEMA1: "Docker schema 1",
    mt.DOCKER_SCHEMA1_SIGNED: "Docker schema 1",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _utc(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(digest: Digest | str) -> str:
    text = str(digest)
    algorithm, _, encoded = text.partition(":")
    return f"{algorithm}:{encoded[:12]}" if encoded else text


def _media_type_name(media_type: str) -> str:
    return _MEDIA_TYPE_NAMES.get(media_type, media_type)


def _page_number(request: Request) -> int:
    return grammar.parse_decimal(request.query_params.get("page"), max_digits=8) or 1


def _query(request: Request) -> str:
    return request.query_params.get("q", "").strip()[:_MAX_QUERY]


def _bad_request(message: str) -> ApiError:
    return ApiError(ErrorCode.UNSUPPORTED, message, status=400)


def _valid_name(text: str) -> str:
    if not grammar.is_valid_name(text):
        raise ApiError(ErrorCode.NAME_INVALID, f"invalid repository name {text[:100]!r}")
    return text


def _valid_reference(text: str) -> str:
    """A tag, or a digest in its canonical spelling; 400 for anything else."""
    if ":" in text:
        try:
            return str(Digest.parse(text))
        except InvalidDigest:
            raise ApiError(ErrorCode.DIGEST_INVALID, f"invalid digest {text[:100]!r}") from None
    if not grammar.is_valid_tag(text):
        raise ApiError(ErrorCode.TAG_INVALID, f"invalid tag {text[:140]!r}")
    return text


class Urls:
    """Every link the pages make, under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def index(self, **params: Any) -> str:
        return self._with(f"{self.prefix}/", params)

    def repo(self, name: str, **params: Any) -> str:
        return self._with(f"{self.prefix}/repo/{quote(name, safe='/')}", params)

    def image(self, name: str, reference: str | Digest) -> str:
        return f"{self.prefix}/repo/{quote(name, safe='/')}/-/manifest/{quote(str(reference), safe=':')}"

    def delete(self, name: str) -> str:
        return f"{self.prefix}/repo/{quote(name, safe='/')}/-/delete"

    @property
    def login(self) -> str:
        return f"{self.prefix}/-/login"

    @property
    def stylesheet(self) -> str:
        return f"{self.prefix}/-/static/style.css"

    @staticmethod
    def _with(path: str, params: dict[str, Any]) -> str:
        # Defaults stay out of the link: no empty filter, no page=1.
        kept = {k: v for k, v in params.items() if v not in (None, "") and not (k == "page" and v == 1)}
        return f"{path}?{urlencode(kept)}" if kept else path


class WebView:
    """The pages of one app: templates, the CSRF guard and a summary cache, built once by ``web_routes``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.urls = Urls(config.web_prefix)
        self.csrf = CsrfGuard()
        self.cache = model.SummaryCache()
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("regtool.server.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(size=human_size, utc=_utc, short=_short, mediatype=_media_type_name)
        env.globals.update(urls=self.urls, artifact_kind=model.artifact_kind)
        self.templates = Jinja2Templates(env=env)
        self.stylesheet = resources.files("regtool.server.web").joinpath("static/style.css").read_bytes()

    # -- plumbing ---------------------------------------------------------------------------------------------

    @staticmethod
    def _context(request: Request) -> ServerContext:
        ctx: ServerContext = request.app.state.context
        return ctx

    def _access(self, request: Request) -> WebAccess:
        return WebAccess(self._context(request).access)

    def page(self, view: Endpoint) -> Endpoint:
        """``view`` with its errors as HTML pages and the security headers every page carries."""

        async def endpoint(request: Request) -> Response:
            try:
                response = await view(request)
            except ApiError as exc:
                response = self._error(request, exc.status, exc.message, exc.headers)
            return self._secure(request, response)

        return endpoint

    def _error(self, request: Request, status: int, message: str, headers: dict[str, str]) -> Response:
        kept = {k: v for k, v in headers.items() if k.lower() in {"www-authenticate", "allow"}}
        return self._render(
            request, "error.html", {"status": status, "message": message, "user": None}, status=status, headers=kept
        )

    def _render(
        self,
        request: Request,
        template: str,
        values: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        nonce = secrets.token_urlsafe(16)
        request.state.csp_nonce = nonce
        values = {
            "open": self._access(request).open,
            "read_only": self.config.read_only,
            "host": request.url.netloc,
            "nonce": nonce,
            "csrf": "",
            **values,
        }
        return self.templates.TemplateResponse(request, template, values, status_code=status, headers=headers)

    def _render_with_form(self, request: Request, template: str, values: dict[str, Any], user: str | None) -> Response:
        """A page that may hold a delete form: the form token goes in, and the cookie it is made from out."""
        token, cookie = self.csrf.issue(request, user)
        response = self._render(request, template, {**values, "csrf": token})
        if cookie is not None:
            self.csrf.set_cookie(response, request, cookie, self.urls.prefix or "/")
        return response

    @staticmethod
    def _secure(request: Request, response: Response) -> Response:
        nonce = getattr(request.state, "csp_nonce", "")
        script = f"'nonce-{nonce}'" if nonce else "'none'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'self'; img-src 'self'; script-src {script}; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        # Pages depend on who asks: never kept by a shared cache, nor shown again to the next user of a browser.
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @staticmethod
    async def _run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Blocking storage reads in a worker thread, as the API handlers do them."""
        return await to_thread.run_sync(lambda: function(*args, **kwargs))

    async def _signed_in(self, request: Request, access: WebAccess) -> str | None:
        """The visitor's user; 401 (the browser asks again) when they sent credentials that are wrong."""
        user = await access.user(request)
        if user is None and not access.open and access.sent_credentials(request):
            raise ApiError(ErrorCode.UNAUTHORIZED, "wrong user name or password", headers=access.challenge)
        return user

    # -- pages ------------------------------------------------------------------------------------------------

    async def repositories(self, request: Request) -> Response:
        access = self._access(request)
        user = await self._signed_in(request, access)
        registry = self._context(request).registry
        names: list[str] = await self._run(registry.repositories)
        visible = [a.name for a in await access.permitted(request, [Access.pull(n) for n in names])]
        if names and not visible and user is None and not access.open:
            # Nothing is open to anonymous visitors: ask who they are rather than show an empty list.
            raise ApiError(ErrorCode.UNAUTHORIZED, "sign in to see the repositories", headers=access.challenge)
        query = _query(request)
        if query:
            visible = [n for n in visible if query.lower() in n.lower()]
        shown, page = model.paginate(visible, _page_number(request))
        rows = await self._run(model.repository_rows, registry, shown)
        return self._render(request, "repositories.html", {"rows": rows, "page": page, "query": query, "user": user})

    async def repository(self, request: Request) -> Response:
        name = _valid_name(str(request.path_params["name"]))
        access = self._access(request)
        user = await self._signed_in(request, access)
        await access.authorize(request, Access.pull(name))
        query = _query(request)
        rows, page = await self._run(
            model.tag_rows, self._context(request).registry, name, self.cache, query=query, number=_page_number(request)
        )
        may_delete = (
            not self.config.read_only
            and not self.config.proxy_remotes
            and self.config.delete_enabled
            and await access.may(request, Access.delete(name))
        )
        deleted = request.query_params.get("deleted", "")[:_MAX_QUERY]
        values = {
            "name": name,
            "rows": rows,
            "page": page,
            "query": query,
            "user": user,
            "may_delete": may_delete,
            "deleted": deleted,
        }
        return self._render_with_form(request, "tags.html", values, user)

    async def image(self, request: Request) -> Response:
        name = _valid_name(str(request.path_params["name"]))
        reference = _valid_reference(str(request.path_params["reference"]))
        access = self._access(request)
        user = await self._signed_in(request, access)
        await access.authorize(request, Access.pull(name))
        view: model.ImageView = await self._run(
            model.image_view, self._context(request).registry, name, reference, self.cache
        )
        may_delete = (
            not self.config.read_only
            and not self.config.proxy_remotes
            and self.config.delete_enabled
            and await access.may(request, Access.delete(name))
        )
        tag = None if ":" in reference else reference
        values = {
            "name": name,
            "tag": tag,
            "image": view,
            "user": user,
            "may_delete": may_delete,
            "commands": self._commands(request, name, tag, view.digest),
        }
        return self._render_with_form(request, "image.html", values, user)

    def _commands(self, request: Request, name: str, tag: str | None, digest: Digest) -> list[tuple[str, str]]:
        """The exact commands that copy this image out of this registry, as reached by the browser."""
        host = request.url.netloc
        by_tag = f"{host}/{name}:{tag}" if tag else None
        by_digest = f"{host}/{name}@{digest}"
        plain = request.url.scheme == "http" and not is_loopback_host(host)
        regtool = "regtool pull --plain-http" if plain else "regtool pull"
        commands = []
        if by_tag:
            commands += [("regtool", f"{regtool} {by_tag}"), ("docker", f"docker pull {by_tag}")]
        commands += [
            ("regtool, by digest", f"{regtool} {by_digest}"),
            ("docker, by digest", f"docker pull {by_digest}"),
        ]
        return commands

    async def delete(self, request: Request) -> Response:
        name = _valid_name(str(request.path_params["name"]))
        access = self._access(request)
        user = await self._signed_in(request, access)
        form = await _read_form(request)
        refused = self.csrf.check(request, user, _one(form, "csrf"))
        if refused is not None:
            raise ApiError(ErrorCode.DENIED, f"not deleted: {refused}", status=403)
        reference = _valid_reference(_one(form, "reference"))
        if self.config.read_only:
            raise ApiError(ErrorCode.UNSUPPORTED, "the registry is read-only: nothing can be deleted", status=405)
        if self.config.proxy_remotes:
            raise ApiError(
                ErrorCode.UNSUPPORTED, "the registry is a pull-through cache: nothing can be deleted", status=405
            )
        if not self.config.delete_enabled:
            raise ApiError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry", status=405)
        await access.authorize(request, Access.delete(name))
        registry = self._context(request).registry
        if ":" in reference:
            await self._run(registry.delete_manifest, name, Digest.parse(reference))
        else:
            await self._run(registry.delete_tag, name, reference)
        # Post/redirect/get: a reload of the next page does not send the form again.
        return RedirectResponse(self.urls.repo(name, deleted=reference), status_code=303)

    async def login(self, request: Request) -> Response:
        access = self._access(request)
        if not access.open and await access.user(request) is None:
            raise ApiError(
                ErrorCode.UNAUTHORIZED, "sign in with your registry user name and password", headers=access.challenge
            )
        return RedirectResponse(self.urls.index(), status_code=303)

    async def style(self, request: Request) -> Response:
        return Response(self.stylesheet, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    async def to_index(self, request: Request) -> Response:
        return RedirectResponse(self.urls.index(), status_code=308)


def _one(form: dict[str, list[str]], key: str) -> str:
    values = form.get(key) or [""]
    return values[0]


async def _read_form(request: Request) -> dict[str, list[str]]:
    """The urlencoded form of a POST; 400 for another body type or a body too big for these small forms."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _bad_request("the form must be sent as application/x-www-form-urlencoded")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > _MAX_FORM_BYTES:
            raise _bad_request(f"the form is larger than {_MAX_FORM_BYTES} bytes")
    try:
        return parse_qs(data.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _bad_request("the form is not valid URL-encoded UTF-8") from None


def web_routes(config: ServerConfig) -> list[BaseRoute]:
    """The pages' routes under ``config.web_prefix``; the image and delete routes come before the repository's."""
    view = WebView(config)
    prefix = config.web_prefix
    routes: list[BaseRoute] = [
        Route(f"{prefix}/", view.page(view.repositories), methods=["GET"], name="web.repositories"),
        Route(f"{prefix}/-/login", view.page(view.login), methods=["GET"], name="web.login"),
        Route(f"{prefix}/-/static/style.css", view.style, methods=["GET"], name="web.style"),
        Route(
            f"{prefix}/repo/{{name:path}}/-/manifest/{{reference}}",
            view.page(view.image),
            methods=["GET"],
            name="web.image",
        ),
        Route(f"{prefix}/repo/{{name:path}}/-/delete", view.page(view.delete), methods=["POST"], name="web.delete"),
        Route(f"{prefix}/repo/{{name:path}}", view.page(view.repository), methods=["GET"], name="web.repository"),
    ]
    if prefix:
        routes.append(Route(prefix, view.to_index, methods=["GET"], name="web.prefix"))
    return routes
