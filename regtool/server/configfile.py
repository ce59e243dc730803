"""``regtool serve --config FILE``: distribution's ``config.yml``, for the parts regtool implements.

The file is read as distribution reads it (``version: 0.1``, the same sections and keys, the same
``REGISTRY_SECTION_KEY`` environment overrides: ``configenv.py``) and turned into ``ServerConfig`` fields.
Every key is accounted for: one regtool acts on is mapped; one that changes nothing here is accepted with a note
saying so (``FileSettings.notes``, printed at start); anything else is a UsageError naming the key, e.g.
``config.yml: storage.azure: not supported by regtool serve``, so a distribution user's file either works
unchanged or says precisely why not.

Defaults are distribution's where they differ from the plain command line: deletes are off unless
``storage.delete.enabled``, and abandoned uploads are purged after 168h unless ``maintenance.uploadpurging``
says otherwise.

Two keys are regtool's own, under ``auth.token``: ``signingkey`` (the PEM key whose certificate chain is
``rootcertbundle``) and ``htpasswd`` (the users of the built-in token endpoint). With them serve issues tokens
at ``/token``, and instances sharing the file share the key; without ``signingkey`` serve only verifies tokens
from the external token server at ``realm``, as distribution does. ``storage.maintenance.gc`` is regtool's too
(``enabled``, ``interval``, ``delay``, ``deleteuntagged``: the online collector of ``serve --gc-interval``);
distribution ignores keys it does not know under ``maintenance``, so one file still serves both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.errors import UsageError
from regtool.server.config import S3_MIN_PART_SIZE, ProxyRemote, S3Settings, ServerConfig
from regtool.server.configenv import apply_environment
from regtool.server.configsection import ConfigReader, ConfigSection, value_kind

__all__ = ["FileSettings", "read_config_file", "server_config_from_file"]

# S3's largest part (its smallest is config.S3_MIN_PART_SIZE).
_S3_MAX_CHUNK = 5 * 1024 * 1024 * 1024
_DEFAULT_PURGE_AGE = 168 * 3600.0
_STORAGE_SETTINGS = ("maintenance", "cache", "delete", "redirect", "tag")
_KNOWN_DRIVERS = ("azure", "gcs", "oss", "swift", "s3", "filesystem", "inmemory")


@dataclass(frozen=True)
class FileSettings:
    """``values``: ServerConfig fields the file sets; ``notes``: keys accepted that change nothing here, and
    environment variables ignored (both as lines for the start-up log)."""

    values: dict[str, Any]
    notes: tuple[str, ...]


def read_config_file(path: Path, environ: Mapping[str, str] | None = None) -> FileSettings:
    """The settings of distribution config file ``path`` with ``environ``'s overrides (default: os.environ)."""
    import yaml  # only where a configuration file is read

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise UsageError(f"{path}: expected a mapping of sections (version, storage, http, ...) at the top")

    def parse_value(raw: str) -> Any:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from None

    # The version is read from the file alone, before the environment, as distribution does.
    _check_version(tree.get("version"), path)
    try:
        overrides = apply_environment(tree, os.environ if environ is None else environ, parse_value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    reader = ConfigReader(str(path), overrides)
    values = _map_config(ConfigSection(reader, (), tree))
    return FileSettings(values, (*reader.notes, *overrides.warnings))


def server_config_from_file(path: Path, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
    """A ServerConfig from config file ``path``, with ``overrides`` (e.g. command-line flags) winning."""
    settings = read_config_file(path, environ)
    try:
        return ServerConfig(**{**settings.values, **overrides})
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _check_version(version: Any, path: Path) -> None:
    # PyYAML reads 0.1 as a float; distribution's decoder as the string "0.1".
    if version is None:
        raise UsageError(f"{path}: version: missing (distribution's configuration files say version: 0.1)")
    if str(version) != "0.1":
        raise UsageError(f"{path}: version: {version!r} is not a configuration version regtool knows (0.1)")


def _map_config(top: ConfigSection) -> dict[str, Any]:
    values: dict[str, Any] = {"delete_enabled": False, "upload_purge_age": _DEFAULT_PURGE_AGE}
    top.accept("version")
    _map_log(top, values)
    _map_storage(top, values)
    _map_http(top, values)
    _map_auth(top, values)
    _map_redis(top, values)
    _map_health(top, values)
    _map_proxy(top, values)
    _map_extras(top)
    top.finish(
        {
            "middleware": "not supported by regtool serve (its storage redirect is storage.redirect)",
            "reporting": "not supported by regtool serve (no bugsnag or newrelic reporting)",
            "policy": "not supported by regtool serve (no repository class policy)",
        }
    )
    return values


def _map_log(top: ConfigSection, values: dict[str, Any]) -> None:
    level = top.text("loglevel")
    log = top.section("log")
    level = log.text("level") or level
    if level is not None:
        if level.lower() not in ("error", "warn", "info", "debug"):
            raise log.error(f"{level!r} is not a log level (error, warn, info or debug)", "level")
        values["log_level"] = level.lower()
    access = log.section("accesslog")
    values["access_log"] = not access.flag("disabled", False)
    access.finish()
    formatter = log.text("formatter")
    if formatter not in (None, "text", "json", "logstash"):
        raise log.error(f"{formatter!r} is not a log formatter (text, json or logstash)", "formatter")
    if formatter not in (None, "text"):
        log.note("formatter", f"{formatter}: regtool writes its own text lines")
    log.note("fields", "not added to regtool's log lines")
    log.note("reportcaller", "regtool's log lines do not name the calling function")
    log.accept("formatter", "fields", "reportcaller")
    hooks = log.take("hooks")
    if hooks is not None and not _all_disabled(hooks):
        raise log.error("log hooks (mail) are not supported by regtool serve; only disabled ones are accepted", "hooks")
    log.finish()


def _all_disabled(entries: Any) -> bool:
    return isinstance(entries, list) and all(isinstance(e, dict) and e.get("disabled") is True for e in entries)


def _map_storage(top: ConfigSection, values: dict[str, Any]) -> None:
    raw = top.take("storage")
    if isinstance(raw, str):
        # distribution takes a bare driver name: "storage: inmemory".
        raw = {raw: {}}
    storage = ConfigSection(top.reader, ("storage",), raw)
    drivers = [key for key in storage.data if key not in _STORAGE_SETTINGS]
    if not drivers:
        raise top.error("no storage driver given (filesystem, inmemory or s3)", "storage")
    if len(drivers) > 1:
        raise top.error(f"exactly one storage driver, not {len(drivers)}: {', '.join(drivers)}", "storage")
    driver = drivers[0]
    params = storage.section(driver)
    if driver == "filesystem":
        values["storage"] = "filesystem"
        values["root"] = Path(params.text("rootdirectory") or "/var/lib/registry")
        params.note("maxthreads", "regtool bounds its own worker threads")
        params.accept("maxthreads")
    elif driver == "inmemory":
        values["storage"] = "inmemory"
        values["root"] = None
    elif driver == "s3":
        values["storage"] = "s3"
        values["root"] = None
        values["s3"] = _s3_settings(params)
    elif driver in _KNOWN_DRIVERS:
        raise storage.error("not supported by regtool serve (its drivers: filesystem, inmemory, s3)", driver)
    else:
        raise storage.error("unknown storage driver (regtool serve has filesystem, inmemory and s3)", driver)
    params.finish()

    delete = storage.section("delete")
    values["delete_enabled"] = delete.flag("enabled", False)
    delete.finish()
    redirect = storage.section("redirect")
    values["storage_redirect"] = not redirect.flag("disable", False)
    redirect.finish()
    cache = storage.section("cache")
    descriptor = cache.text("blobdescriptor")
    if descriptor == "redis":
        if not top.has("redis"):
            raise cache.error("redis needs the redis section (redis.addr)", "blobdescriptor")
    elif descriptor not in (None, "inmemory"):
        raise cache.error(f"{descriptor!r} is not a blob descriptor cache (redis or inmemory)", "blobdescriptor")
    if descriptor == "inmemory":
        cache.note("blobdescriptor", "inmemory: regtool keeps no per-process descriptor cache; reads go to storage")
    cache.note("blobdescriptorsize", "regtool sizes no in-memory descriptor cache")
    cache.accept("blobdescriptorsize")
    cache.finish()
    _map_maintenance(storage.section("maintenance"), values)
    storage.note("tag", "regtool reads tags without a concurrency limit of its own")
    storage.accept("tag")
    storage.finish()


def _s3_settings(params: ConfigSection) -> S3Settings:
    bucket = params.text("bucket")
    if not bucket:
        raise params.error("no bucket parameter provided", "bucket")
    endpoint = params.text("regionendpoint") or None
    chunk = params.integer("chunksize")
    if chunk is not None and not S3_MIN_PART_SIZE <= chunk <= _S3_MAX_CHUNK:
        raise params.error(f"{chunk} is out of range: S3 parts are 5 MiB ({S3_MIN_PART_SIZE}) to 5 GiB", "chunksize")
    if not params.flag("v4auth", True):
        raise params.error("false: regtool signs every request with AWS Signature Version 4", "v4auth")
    if params.flag("encrypt", False):
        raise params.error("true: server-side encryption is not supported by regtool serve", "encrypt")
    if params.text("keyid"):
        raise params.error("KMS keys are not supported by regtool serve", "keyid")
    storage_class = params.text("storageclass")
    if storage_class not in (None, "STANDARD"):
        raise params.error(f"{storage_class}: regtool writes the STANDARD storage class only", "storageclass")
    acl = params.text("objectacl")
    if acl not in (None, "private"):
        raise params.error(f"{acl}: regtool writes private objects only", "objectacl")
    for key in ("multipartcopychunksize", "multipartcopymaxconcurrency", "multipartcopythresholdsize"):
        params.integer(key)
        params.note(key, "regtool copies objects server-side in its own parts")
    params.note("useragent", "regtool sends botocore's user agent")
    params.note("loglevel", "regtool does not log the S3 client's requests")
    params.accept("useragent", "loglevel")
    sizes = {} if chunk is None else {"chunk_size": chunk}
    return S3Settings(
        **sizes,
        bucket=bucket,
        region=params.text("region") or "us-east-1",
        endpoint=endpoint,
        root_directory=(params.text("rootdirectory") or "").strip("/"),
        # distribution 2.8 addresses a custom endpoint by path (3.x reads forcepathstyle).
        force_path_style=params.flag("forcepathstyle", endpoint is not None),
        access_key=params.text("accesskey") or None,
        secret_key=params.text("secretkey") or None,
        secure=params.flag("secure", True),
        skip_verify=params.flag("skipverify", False),
    )


def _map_maintenance(maintenance: ConfigSection, values: dict[str, Any]) -> None:
    purging = maintenance.section("uploadpurging")
    enabled = purging.flag("enabled", True)
    age = purging.duration("age")
    interval = purging.duration("interval")
    if interval is not None:
        if interval <= 0:
            raise purging.error("must be longer than 0s", "interval")
        values["upload_purge_interval"] = interval
    dry_run = purging.flag("dryrun", False)
    purging.finish()
    if not enabled:
        values["upload_purge_age"] = None
    elif dry_run:
        purging.note("dryrun", "true: nothing is purged")
        values["upload_purge_age"] = None
    else:
        values["upload_purge_age"] = age if age is not None else _DEFAULT_PURGE_AGE
    readonly = maintenance.section("readonly")
    values["read_only"] = readonly.flag("enabled", False)
    readonly.finish()
    _map_gc(maintenance.section("gc"), values)
    maintenance.finish()


def _map_gc(gc: ConfigSection, values: dict[str, Any]) -> None:
    """regtool's own ``storage.maintenance.gc`` (distribution ignores keys it does not know there): the online
    collector, as ``serve --gc-interval``, ``--gc-delay`` and ``--gc-delete-untagged`` set it."""
    enabled = gc.flag("enabled", True)
    interval = gc.duration("interval")
    delay = gc.duration("delay")
    delete_untagged = gc.flag("deleteuntagged", False)
    gc.finish()
    if not enabled or not gc.data:
        return
    if interval is None or interval <= 0:
        raise gc.error("how often a pass runs: must be longer than 0s", "interval")
    values["gc_interval"] = interval
    if delay is not None:
        values["gc_delay"] = delay
    values["gc_delete_untagged"] = delete_untagged


def _map_http(top: ConfigSection, values: dict[str, Any]) -> None:
    http = top.section("http")
    addr = http.text("addr")
    if addr is not None:
        values["host"], values["port"] = _listen_address(addr, http)
    net = http.text("net")
    if net not in (None, "tcp"):
        raise http.error(f"{net}: regtool serve listens on TCP only", "net")
    host = http.text("host")
    if host:
        if not re.match(r"^https?://[^/]+", host):
            raise http.error(f"{host!r} is not an absolute http(s) URL", "host")
        http.note("host", "regtool's Location headers are relative, so they hold behind any address")
    prefix = http.text("prefix")
    if prefix not in (None, "", "/"):
        raise http.error(
            f"{prefix}: not supported by regtool serve (it serves /v2/ at the root; strip the prefix in the proxy)",
            "prefix",
        )
    http.text("secret")
    # Distribution signs upload state with it so another instance can continue an upload; regtool keeps that
    # state in storage, which every instance shares.
    http.note("secret", "upload state lives in the shared storage, so instances need no shared secret")
    http.flag("relativeurls", False)
    http.note("relativeurls", "regtool's Location headers are always relative")
    http.duration("draintimeout")
    http.note("draintimeout", "regtool gives requests in flight its own fixed grace period on SIGTERM")
    _map_tls(http.section("tls"), values)
    values["response_headers"] = _response_headers(http)
    debug = http.section("debug")
    debug_addr = debug.text("addr")
    if debug_addr:
        debug_host, debug_port = _listen_address(debug_addr, debug)
        values["debug_addr"] = f"[{debug_host}]:{debug_port}" if ":" in debug_host else f"{debug_host}:{debug_port}"
    prometheus = debug.section("prometheus")
    if prometheus.has("enabled"):
        values["metrics"] = prometheus.flag("enabled", True)
    path = prometheus.text("path")
    if path not in (None, "/metrics"):
        raise prometheus.error(f"{path}: regtool serves Prometheus metrics at /metrics only", "path")
    prometheus.finish()
    debug.finish()
    http2 = http.section("http2")
    http2.flag("disabled", False)
    http2.note("disabled", "regtool serves HTTP/1.1 only")
    http2.finish()
    h2c = http.section("h2c")
    if h2c.flag("enabled", False):
        raise h2c.error("true: regtool serves HTTP/1.1 only", "enabled")
    h2c.finish()
    http.finish()


def _response_headers(http: ConfigSection) -> tuple[tuple[str, str], ...]:
    """``http.headers``: a name and its list of values (or one value), each value one header line."""
    headers = http.take("headers")
    if headers is None:
        return ()
    if not isinstance(headers, dict):
        raise http.error(f"expected a mapping of header names to lists of values, not {value_kind(headers)}", "headers")
    pairs: list[tuple[str, str]] = []
    for name, listed in headers.items():
        for value in listed if isinstance(listed, list) else [listed]:
            if isinstance(value, bool | dict | list) or value is None:
                raise http.error(f"{name}: expected text values, not {value_kind(value)}", "headers")
            pairs.append((str(name), str(value)))
    return tuple(pairs)


def _listen_address(addr: str, section: ConfigSection) -> tuple[str, int]:
    """HOST and PORT of ``section.addr`` (http or http.debug)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise section.error(f"{addr!r} is not HOST:PORT (e.g. :5000 or 127.0.0.1:5000)", "addr")
    host = host.strip("[]")
    # Go's ":5000" listens on every address.
    return host or "0.0.0.0", int(port)


def _map_tls(tls: ConfigSection, values: dict[str, Any]) -> None:
    certificate, key = tls.text("certificate"), tls.text("key")
    if certificate or key:
        if not (certificate and key):
            raise tls.error("give both certificate and key")
        values["tls_cert"], values["tls_key"] = Path(certificate), Path(key)
    for name in ("clientcas", "clientauth", "letsencrypt"):
        if tls.take(name):
            raise tls.error("not supported by regtool serve (no client certificates or ACME)", name)
    minimum = tls.text("minimumtls")
    if minimum not in (None, "tls1.2"):
        raise tls.error(f"{minimum}: regtool serve accepts TLS 1.2 and later, as distribution's default", "minimumtls")
    if tls.take("ciphersuites"):
        raise tls.error("not supported by regtool serve (Python's default TLS 1.2+ suites)", "ciphersuites")
    tls.finish()


def _map_auth(top: ConfigSection, values: dict[str, Any]) -> None:
    raw = top.take("auth")
    if isinstance(raw, str):
        raw = {raw: {}}
    auth = ConfigSection(top.reader, ("auth",), raw)
    if len(auth.data) > 1:
        raise top.error(f"exactly one auth type, not {', '.join(auth.data)}", "auth")
    if auth.has("htpasswd"):
        htpasswd = auth.section("htpasswd")
        path = htpasswd.text("path")
        if not path:
            raise htpasswd.error("no path to an htpasswd file", "path")
        if Path(path).is_dir():
            raise htpasswd.error(f"{path} is a directory, not an htpasswd file", "path")
        if not Path(path).exists():
            # distribution would write one with a user "docker" and a random password in its log.
            raise htpasswd.error(
                f"{path} does not exist; regtool does not provision users: create it (htpasswd -Bc {path} USER)",
                "path",
            )
        values["htpasswd"] = Path(path)
        realm = htpasswd.text("realm")
        if realm:
            values["token_service"] = realm
        htpasswd.finish()
    elif auth.has("token"):
        token = auth.section("token")
        realm, service, issuer = token.text("realm"), token.text("service"), token.text("issuer")
        bundle = token.text("rootcertbundle")
        for key, value in (("realm", realm), ("service", service), ("issuer", issuer), ("rootcertbundle", bundle)):
            if not value:
                raise token.error(
                    "missing (distribution's token auth needs realm, service, issuer, rootcertbundle)", key
                )
        assert realm is not None and service is not None and issuer is not None and bundle is not None
        values.update(token_auth=True, token_realm=realm, token_service=service, token_issuer=issuer)
        values["token_cert"] = Path(bundle)
        signing_key = token.text("signingkey")
        if signing_key:
            values["token_key"] = Path(signing_key)
        users = token.text("htpasswd")
        if users:
            values["htpasswd"] = Path(users)
        if token.take("jwks"):
            raise token.error("not supported by regtool serve (trust an x5c chain with rootcertbundle)", "jwks")
        algorithms = token.take("signingalgorithms")
        if algorithms is not None and not (
            isinstance(algorithms, list) and {"ES256", "RS256"} & {str(a) for a in algorithms}
        ):
            raise token.error("regtool signs and verifies ES256 and RS256 tokens only", "signingalgorithms")
        if token.flag("autoredirect", False):
            raise token.error("true: not supported by regtool serve", "autoredirect")
        token.accept("autoredirectpath")
        token.finish()
    for name in auth.data:
        if name not in ("htpasswd", "token"):
            reason = "silly auth is for distribution's tests" if name == "silly" else "unknown auth type"
            raise auth.error(f"{reason}: regtool serve has htpasswd and token", name)
    auth.finish()


def _map_redis(top: ConfigSection, values: dict[str, Any]) -> None:
    if not top.has("redis"):
        top.accept("redis")
        return
    redis = top.section("redis")
    addr = redis.text("addr")
    if not addr:
        raise redis.error("no addr (HOST:PORT of the Redis server)", "addr")
    values["redis_addr"] = addr
    password = redis.text("password")
    if password:
        values["redis_password"] = password
    db = redis.integer("db")
    if db is not None:
        values["redis_db"] = db
    for key in ("dialtimeout", "readtimeout", "writetimeout"):
        redis.duration(key)
        redis.note(key, "regtool's Redis client uses its own timeouts")
    pool = redis.section("pool")
    pool.integer("maxidle")
    pool.integer("maxactive")
    pool.duration("idletimeout")
    redis.note("pool", "regtool's Redis client sizes its own connection pool")
    pool.finish()
    tls = redis.section("tls")
    if tls.flag("enabled", False):
        raise tls.error("true: regtool connects to Redis without TLS", "enabled")
    tls.finish()
    redis.finish({"addrs": "not supported by regtool serve (one Redis server: addr)"})


def _map_health(top: ConfigSection, values: dict[str, Any]) -> None:
    health = top.section("health")
    storage = health.section("storagedriver")
    if storage.flag("enabled", True):
        interval = storage.duration("interval")
        if interval is not None:
            if interval <= 0:
                raise storage.error("must be longer than 0s", "interval")
            values["health_storage_interval"] = interval
        threshold = storage.integer("threshold")
        if threshold is not None:
            if threshold < 1:
                raise storage.error("must be at least 1", "threshold")
            values["health_storage_threshold"] = threshold
    else:
        storage.accept("interval", "threshold")
        storage.note("enabled", "false: /debug/health still checks storage")
    storage.finish()
    health.finish(dict.fromkeys(("file", "http", "tcp"), "not supported by regtool serve (storage checks only)"))


def _map_proxy(top: ConfigSection, values: dict[str, Any]) -> None:
    if not top.has("proxy"):
        top.accept("proxy")
        return
    proxy = top.section("proxy")
    url = proxy.text("remoteurl")
    if not url or not re.match(r"^https?://[^/]+", url):
        raise proxy.error(f"{url!r} is not the upstream's http(s) URL", "remoteurl")
    values["proxy_remotes"] = (
        ProxyRemote(url.rstrip("/"), None, proxy.text("username") or None, proxy.text("password") or None),
    )
    ttl = proxy.duration("ttl")
    if ttl is not None:
        values["proxy_ttl"] = ttl
    if proxy.take("exec"):
        raise proxy.error("not supported by regtool serve (give username and password)", "exec")
    proxy.finish()


def _map_extras(top: ConfigSection) -> None:
    """Sections distribution has whose defaults regtool matches: accepted when they ask for nothing more."""
    notifications = top.section("notifications")
    if not _all_disabled(notifications.take("endpoints") or []):
        raise notifications.error(
            "webhooks are not supported by regtool serve; only disabled ones are accepted", "endpoints"
        )
    notifications.accept("events")
    notifications.finish()
    compatibility = top.section("compatibility")
    schema1 = compatibility.section("schema1")
    if schema1.flag("enabled", False):
        schema1.note("enabled", "regtool refuses schema1 manifests (MANIFEST_INVALID)")
    schema1.accept("signingkeyfile")
    schema1.finish()
    compatibility.finish()
    validation = top.section("validation")
    validation.flag("enabled", False)
    validation.flag("disabled", False)
    manifests = validation.section("manifests")
    if manifests.take("urls"):
        raise manifests.error("not supported by regtool serve (foreign layer URLs are not checked)", "urls")
    manifests.finish()
    validation.finish()
    catalog = top.section("catalog")
    catalog.integer("maxentries")
    catalog.note("maxentries", "regtool pages the catalog with its own limit")
    catalog.finish()
