"""``regtool serve``: run the registry (v2 / OCI, and v1) on HOST:PORT until SIGINT/SIGTERM."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from regtool.cli.app import app
from regtool.cli.console import fail, stderr
from regtool.cli.storage_options import (
    DEFAULT_REGION,
    S3BucketOption,
    S3EndpointOption,
    S3PathStyleOption,
    S3RegionOption,
    S3RootOption,
    s3_settings,
)

__all__ = ["serve", "serve_app"]

# distribution's log levels (log.level in its config.yml) as the logging module's.
_LOG_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}

StorageOption = Annotated[
    str, typer.Option("--storage", help="filesystem (under --root), inmemory, or s3 (an S3-compatible bucket).")
]

# A group: ``regtool serve [OPTIONS]`` runs the registry (the callback below, invoked without a subcommand), and
# the store's offline jobs are its subcommands (``regtool serve gc``), with the same storage options.
serve_app = typer.Typer(
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(serve_app, name="serve")


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="distribution's config.yml (and its REGISTRY_* variables); flags given here override it.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 5000,
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Storage directory (default: a per-user data directory, printed at start)."),
    ] = None,
    storage: StorageOption = "filesystem",
    # Object storage, as `serve gc` takes it too.
    s3_endpoint: S3EndpointOption = None,
    s3_bucket: S3BucketOption = None,
    s3_region: S3RegionOption = DEFAULT_REGION,
    s3_root: S3RootOption = "",
    s3_path_style: S3PathStyleOption = False,
    no_storage_redirect: Annotated[
        bool,
        typer.Option("--no-storage-redirect", help="With s3: serve blob bytes, not 307 redirects to the store."),
    ] = False,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse pushes and deletes.")] = False,
    max_manifest_size: Annotated[
        int, typer.Option("--max-manifest-size", min=1, help="Largest manifest accepted, in bytes (413 above).")
    ] = 4 * 1024 * 1024,
    latency: Annotated[
        float, typer.Option("--latency", min=0, help="Add this many milliseconds to every request (demos).")
    ] = 0.0,
    no_v1: Annotated[bool, typer.Option("--no-v1", help="Disable the v1 API (404 on /v1/).")] = False,
    no_v2: Annotated[bool, typer.Option("--no-v2", help="Disable the v2 API (404 on /v2/).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No access log on stderr.")] = False,
    # Abandoned upload sessions.
    upload_purge_age: Annotated[
        float | None,
        typer.Option(
            "--upload-purge-age",
            metavar="SECONDS",
            min=0,
            help="Delete upload sessions idle for longer than this (default: keep them).",
            show_default=False,
        ),
    ] = None,
    # Authentication and TLS.
    htpasswd: Annotated[
        Path | None,
        typer.Option("--htpasswd", metavar="FILE", help="Require HTTP Basic auth against this bcrypt htpasswd file."),
    ] = None,
    token_auth: Annotated[
        bool,
        typer.Option(
            "--token-auth", help="Require bearer tokens from the built-in /token endpoint (users from --htpasswd)."
        ),
    ] = False,
    anonymous_pull: Annotated[
        bool, typer.Option("--anonymous-pull", help="With --htpasswd or --token-auth: let anyone pull.")
    ] = False,
    auth_acl: Annotated[
        Path | None,
        typer.Option("--auth-acl", metavar="FILE", help="Per-user rights, lines of USER REPOSITORY-GLOB ACTIONS."),
    ] = None,
    token_realm: Annotated[
        str | None,
        typer.Option("--token-realm", metavar="URL", help="Realm URL to announce (default: this server's /token)."),
    ] = None,
    token_service: Annotated[str, typer.Option("--token-service", help="Service name in tokens.")] = "regtool",
    token_issuer: Annotated[str, typer.Option("--token-issuer", help="Issuer name in tokens.")] = "regtool",
    token_ttl: Annotated[int, typer.Option("--token-ttl", min=60, help="Token lifetime in seconds.")] = 300,
    token_key: Annotated[
        Path | None,
        typer.Option("--token-key", metavar="FILE", help="PEM key (EC P-256 or RSA) to sign tokens (default: new)."),
    ] = None,
    token_cert: Annotated[
        Path | None,
        typer.Option(
            "--token-cert",
            metavar="FILE",
            help="PEM certificate chain of --token-key, or alone the root bundle of an external token server "
            "at --token-realm.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", metavar="FILE", help="Serve HTTPS with this PEM certificate chain.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", metavar="FILE", help="PEM key of --tls-cert.")] = None,
    no_web: Annotated[bool, typer.Option("--no-web", help="No web pages for browsers (at / by default).")] = False,
    web_prefix: Annotated[
        str, typer.Option("--web-prefix", metavar="PATH", help="Serve the web pages under PATH (e.g. /ui), not /.")
    ] = "",
    # A pull-through cache of other registries.
    proxy_remote: Annotated[
        list[str] | None,
        typer.Option(
            "--proxy-remote",
            metavar="[NS=]URL",
            help="Be a pull-through cache of the registry at URL; NS=URL serves containerd's ?ns=NS (repeatable).",
            show_default=False,
        ),
    ] = None,
    proxy_username: Annotated[
        str | None, typer.Option("--proxy-username", help="User for the upstream (default: docker's config.json).")
    ] = None,
    proxy_password_file: Annotated[
        Path | None,
        typer.Option(
            "--proxy-password-file", metavar="FILE", help="The upstream user's password (or REGTOOL_PROXY_PASSWORD)."
        ),
    ] = None,
    proxy_ttl: Annotated[
        str, typer.Option("--proxy-ttl", metavar="DURATION", help="Remove cached content unused this long (168h, 30m).")
    ] = "168h",
    proxy_max_size: Annotated[
        str | None,
        typer.Option(
            "--proxy-max-size", metavar="SIZE", help="Cap the cache (e.g. 10G), evicting least recently used."
        ),
    ] = None,
    # Several instances: a shared cache, metrics.
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            metavar="HOST:PORT",
            help="Cache blob descriptors in this Redis, shared by every instance (password: REGTOOL_REDIS_PASSWORD).",
            show_default=False,
        ),
    ] = None,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="No Prometheus /metrics (served to loopback clients only).")
    ] = False,
    debug_addr: Annotated[
        str | None,
        typer.Option(
            "--debug-addr",
            metavar="HOST:PORT",
            help="Serve /metrics (to anyone) and /debug/health here too, and /metrics no more on the main port.",
            show_default=False,
        ),
    ] = None,
    # The garbage collector in the server process.
    gc_interval: Annotated[
        str | None,
        typer.Option(
            "--gc-interval",
            metavar="DURATION",
            help="Collect garbage (as `serve gc` does) every DURATION (e.g. 1h) while serving.",
            show_default=False,
        ),
    ] = None,
    gc_delay: Annotated[
        str,
        typer.Option(
            "--gc-delay", metavar="DURATION", help="Grace period of --gc-interval: keep what is younger than this."
        ),
    ] = "1h",
    gc_delete_untagged: Annotated[
        bool,
        typer.Option(
            "--gc-delete-untagged",
            help="--gc-interval removes untagged manifests too, as `serve gc --delete-untagged` (kept by default).",
        ),
    ] = False,
) -> None:
    """Run a registry speaking v2 / OCI distribution (and v1) until interrupted."""
    if ctx.invoked_subcommand is not None:
        _refuse_serve_options_before(ctx)
        return
    from regtool.cli.serve_config import apply_config_file, given_flags
    from regtool.errors import UsageError
    from regtool.server import ServerConfig, create_app, runner
    from regtool.server.app import create_debug_app
    from regtool.server.config import default_root
    from regtool.server.tls import check_tls_files

    if storage not in ("filesystem", "inmemory", "s3"):
        fail(f"--storage must be filesystem, inmemory or s3, not {storage!r}", 2)
    if no_v1 and no_v2:
        fail("--no-v1 and --no-v2 together leave nothing to serve", 2)
    if storage == "inmemory" and root is not None:
        fail("--root is for filesystem storage: --storage inmemory keeps nothing on disk", 2)
    if storage == "s3" and root is not None:
        fail("--root is for filesystem storage: --storage s3 keeps the registry in the bucket", 2)
    data_root = None if storage in ("inmemory", "s3") else (root or default_root()).expanduser().resolve()
    try:
        s3 = s3_settings(storage, s3_endpoint, s3_bucket, s3_region, s3_root, s3_path_style)
        proxy = _proxy_settings(proxy_remote or [], proxy_username, proxy_password_file, proxy_ttl, proxy_max_size)
        fields = dict(
            host=host,
            port=port,
            root=data_root,
            storage=storage,
            s3=s3,
            storage_redirect=not no_storage_redirect,
            read_only=read_only,
            max_manifest_bytes=max_manifest_size,
            enable_v1=not no_v1,
            enable_v2=not no_v2,
            latency_ms=latency,
            access_log=not quiet,
            upload_purge_age=upload_purge_age,
            htpasswd=htpasswd,
            token_auth=token_auth,
            anonymous_pull=anonymous_pull,
            auth_acl=auth_acl,
            token_realm=token_realm,
            token_service=token_service,
            token_issuer=token_issuer,
            token_ttl=token_ttl,
            token_key=token_key,
            token_cert=token_cert,
            tls_cert=tls_cert,
            tls_key=tls_key,
            web=not no_web,
            web_prefix=web_prefix,
            redis_addr=redis,
            redis_password=os.environ.get("REGTOOL_REDIS_PASSWORD") or None,
            metrics=not no_metrics,
            debug_addr=debug_addr,
            **_gc_settings(gc_interval, gc_delay, gc_delete_untagged, from_file=config_file is not None),
            **proxy,
        )
        config = ServerConfig(**apply_config_file(config_file, fields, given_flags(ctx)))
        if config.tls_cert is not None and config.tls_key is not None:
            check_tls_files(config.tls_cert, config.tls_key)
    except UsageError as exc:
        fail(str(exc), 2)
    # Bound before anything is printed or created: a busy port fails with nothing left behind, and --port 0
    # announces the port it got.
    try:
        sock = runner.bind(config.host, config.port)
    except OSError as exc:
        fail(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", 1)
    debug_sock = None
    if config.debug_addr is not None:
        from regtool.reference import split_host_port

        debug_host, debug_port = split_host_port(config.debug_addr)
        try:
            debug_sock = runner.bind(debug_host, debug_port or 0)
        except OSError as exc:
            sock.close()
            fail(f"cannot listen on {config.debug_addr} (the debug address): {exc.strerror or exc}", 1)
    try:
        config = dataclasses.replace(config, port=int(sock.getsockname()[1]))
        application = create_app(config)
    except (UsageError, OSError) as exc:
        sock.close()
        if debug_sock is not None:
            debug_sock.close()
        fail(str(exc), 2)
    debug = None if debug_sock is None else (create_debug_app(application), debug_sock)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for name in ("regtool.server.access", "regtool.server"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(_LOG_LEVELS.get(config.log_level, logging.INFO))
        logger.propagate = False
    apis = " + ".join(api for api, on in (("v2", config.enable_v2), ("v1", config.enable_v1)) if on)
    where = f"root {config.root}" if config.root is not None else "in memory"
    if config.s3 is not None:
        where = f"s3 bucket {config.s3.bucket} at {config.s3.endpoint or 'AWS'}"
    scheme = "https" if config.tls_cert is not None else "http"
    auth = "token auth" if config.token_auth else "basic auth" if config.htpasswd is not None else "no auth"
    address = f"[{config.host}]" if ":" in config.host else config.host
    cache = f", redis cache {config.redis_addr}" if config.redis_addr is not None else ""
    debug_line = "" if debug_sock is None else f", metrics and health on http://{config.debug_addr}"
    mirrors = ", ".join(f"{r.namespace}={r.url}" if r.namespace else r.url for r in config.proxy_remotes)
    mirror_line = f", pull-through cache of {mirrors}" if mirrors else ""
    stderr.print(
        f"regtool serve: {scheme}://{address}:{config.port} ({apis}), {where}, {auth}{cache}{mirror_line}{debug_line}"
    )
    runner.run(
        application,
        config.host,
        config.port,
        tls_cert=config.tls_cert,
        tls_key=config.tls_key,
        sock=sock,
        debug=debug,
    )
    stderr.print("regtool serve: stopped")


def _proxy_settings(
    remotes: list[str], username: str | None, password_file: Path | None, ttl: str, max_size: str | None
) -> dict[str, Any]:
    """The ServerConfig fields of the pull-through cache options (no remotes: a plain registry)."""
    import os

    from regtool.cli.push import parse_size
    from regtool.durations import parse_duration
    from regtool.errors import UsageError
    from regtool.server.proxy.remotes import parse_proxy_remotes

    if not remotes and (username is not None or password_file is not None):
        raise UsageError("--proxy-username and --proxy-password-file are for the upstreams of --proxy-remote")
    if username is None and password_file is not None:
        raise UsageError("--proxy-password-file needs --proxy-username")
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read --proxy-password-file {password_file}: {exc.strerror or exc}") from None
    elif username is not None:
        password = os.environ.get("REGTOOL_PROXY_PASSWORD")
    return {
        "proxy_remotes": parse_proxy_remotes(remotes, username=username, password=password),
        "proxy_ttl": parse_duration(ttl, what="--proxy-ttl"),
        "proxy_max_size": None if max_size is None else parse_size(max_size),
    }


def _gc_settings(interval: str | None, delay: str, delete_untagged: bool, *, from_file: bool) -> dict[str, Any]:
    """The ServerConfig fields of ``--gc-interval``, ``--gc-delay`` and ``--gc-delete-untagged``.

    ``from_file``: a configuration file may set the interval (``storage.maintenance.gc``), so the other two are
    taken alone and ServerConfig checks what the file and the flags give together.
    """
    from regtool.durations import parse_duration
    from regtool.errors import UsageError

    if interval is None and from_file:
        return {"gc_delay": parse_duration(delay, what="--gc-delay"), "gc_delete_untagged": delete_untagged}
    if interval is None:
        if delay != "1h":
            raise UsageError("--gc-delay is the grace period of --gc-interval: add --gc-interval DURATION")
        if delete_untagged:
            raise UsageError("--gc-delete-untagged says what --gc-interval removes: add --gc-interval DURATION")
        return {}
    seconds = parse_duration(interval, what="--gc-interval")
    if seconds <= 0:
        raise UsageError(f"--gc-interval must be longer than 0, not {interval!r}")
    return {
        "gc_interval": seconds,
        "gc_delay": parse_duration(delay, what="--gc-delay"),
        "gc_delete_untagged": delete_untagged,
    }


def _refuse_serve_options_before(ctx: typer.Context) -> None:
    """``serve --root X gc`` would give --root to the server, not to gc, and gc would quietly use the default."""
    from typer._click.core import ParameterSource

    given = [
        param.opts[0]
        for param in ctx.command.params
        if param.name and param.opts and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ]
    if given:
        sub = ctx.invoked_subcommand
        fail(f"{', '.join(given)} before {sub!r} would be the server's options, not {sub}'s: put them after {sub}", 2)
