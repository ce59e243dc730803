"""distribution's ``REGISTRY_SECTION_KEY`` environment overrides, applied to a parsed ``config.yml`` tree.

The rules are distribution's (``configuration/parser.go``):

- every variable named ``REGISTRY_<PATH>`` is applied, in lexical order of the names, so ``REGISTRY_STORAGE``
  (a whole section) comes before ``REGISTRY_STORAGE_S3_BUCKET`` (one key in it);
- the path is split on ``_``; inside one of distribution's structures each part names a field (compared in upper
  case), and a part that names no field is ignored with a warning (so a Kubernetes service called ``registry``,
  which sets ``REGISTRY_SERVICE_HOST``, does not break the start);
- inside a map (``storage``, ``auth``, ``http.headers``, ...) the part is a key, matched in upper case against the
  keys present, created in lower case when absent;
- the value is parsed as YAML, as the file is: ``true`` is a boolean, ``10s`` a string, ``{a: 1}`` a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DISTRIBUTION_SHAPE", "MAP", "EnvOverrides", "apply_environment"]

PREFIX = "REGISTRY_"
# A level whose keys are data, not field names.
MAP = "map"
# A value (or a list, indexed by number, or something distribution only passes on).
LEAF = "leaf"

Shape = dict[str, Any] | str
# Sections distribution also takes as a bare name (its Storage and Auth types' UnmarshalYAML).
_NAMED_SECTIONS = ("storage", "auth")


def _fields(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names, LEAF)


# distribution's configuration structures (2.8, and the keys 3.x added), as far as an environment variable can
# reach into them. Sections regtool does not implement are here too: their variables must reach the tree so the
# check that follows can say they are not supported, rather than being ignored as unknown.
DISTRIBUTION_SHAPE: dict[str, Any] = {
    **_fields("version", "loglevel"),
    "log": {
        **_fields("level", "formatter", "hooks", "reportcaller"),
        "accesslog": _fields("disabled"),
        "fields": MAP,
    },
    "storage": MAP,
    "auth": MAP,
    "middleware": MAP,
    "reporting": MAP,
    "http": {
        **_fields("addr", "net", "host", "prefix", "secret", "relativeurls", "draintimeout"),
        "tls": {
            **_fields("certificate", "key", "clientcas", "clientauth", "minimumtls", "ciphersuites"),
            "letsencrypt": MAP,
        },
        "headers": MAP,
        "debug": {"addr": LEAF, "prometheus": _fields("enabled", "path")},
        "http2": _fields("disabled"),
        "h2c": _fields("enabled"),
    },
    "notifications": MAP,
    "redis": {
        **_fields("addr", "addrs", "username", "password", "db", "dialtimeout", "readtimeout", "writetimeout", "tls"),
        "pool": _fields("maxidle", "maxactive", "idletimeout", "size", "maxlifetime"),
    },
    "health": {"storagedriver": _fields("enabled", "interval", "threshold"), **_fields("file", "http", "tcp")},
    "catalog": _fields("maxentries"),
    "proxy": {**_fields("remoteurl", "username", "password", "ttl"), "exec": MAP},
    "compatibility": MAP,
    "validation": MAP,
    "policy": MAP,
}


class EnvOverrides:
    """What the environment changed: ``origins`` maps a config path to the variable that set it; ``warnings``
    name the variables ignored (as distribution warns about them)."""

    def __init__(self) -> None:
        self.origins: dict[tuple[str, ...], str] = {}
        self.warnings: list[str] = []

    def origin(self, path: tuple[str, ...]) -> str | None:
        """The variable that set ``path`` or a section holding it, else the first that set a key inside it."""
        for end in range(len(path), 0, -1):
            name = self.origins.get(path[:end])
            if name is not None:
                return name
        return next((name for where, name in self.origins.items() if where[: len(path)] == path), None)


def apply_environment(tree: dict[str, Any], environ: Mapping[str, str], parse: Any) -> EnvOverrides:
    """Apply every ``REGISTRY_*`` variable of ``environ`` to ``tree`` in place; ``parse`` turns a value's text into
    its YAML value (the caller's loader, so the YAML library is imported only where a file is read).

    A value that is not valid YAML raises ValueError naming the variable.
    """
    overrides = EnvOverrides()
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name == PREFIX:
            continue
        parts = name[len(PREFIX) :].split("_")
        try:
            value = parse(environ[name])
        except ValueError as exc:
            raise ValueError(f"environment variable {name}: not a YAML value: {exc}") from None
        path = _overwrite(tree, DISTRIBUTION_SHAPE, parts, value, ())
        if path is None:
            overrides.warnings.append(f"ignoring unrecognized environment variable {name}")
        else:
            overrides.origins[path] = name
    return overrides


def _overwrite(
    container: dict[str, Any] | list[Any], shape: Shape, parts: list[str], value: Any, path: tuple[str, ...]
) -> tuple[str, ...] | None:
    """Set ``value`` at ``parts`` below ``container``; the config path it landed on, or None when ignored."""
    head, rest = parts[0], parts[1:]
    if isinstance(container, list):
        if not head.isdigit() or int(head) > len(container):
            return None
        index = int(head)
        if index == len(container):
            container.append({} if rest else None)
        if not rest:
            container[index] = value
            return (*path, head)
        child = container[index]
        if not isinstance(child, dict | list):
            child = container[index] = {}
        return _overwrite(child, LEAF, rest, value, (*path, head))
    if isinstance(shape, dict):
        key = next((field for field in shape if field.upper() == head), None)
        if key is None:
            return None
        child_shape: Shape = shape[key]
    else:
        # A map (or a value distribution only passes on, which is an implicit map): match a present key in upper
        # case, or create it in lower case.
        key = next(
            (k for k in container if isinstance(k, str) and k.upper() == head and container[k] is not None), None
        )
        if key is not None and not rest:
            # A whole value is set under the lower-case key, as distribution does; the old spelling goes.
            del container[key]
            key = None
        if key is None:
            key = head.lower()
        child_shape = MAP
    if not rest:
        container[key] = value
        return (*path, key)
    child = container.get(key)
    if isinstance(child, str) and not path and key in _NAMED_SECTIONS:
        # "storage: inmemory" is the map {inmemory: {}} to distribution, so a key can still be set inside it.
        child = container[key] = {child: {}}
    if not isinstance(child, dict | list):
        child = container[key] = {}
    return _overwrite(child, child_shape, rest, value, (*path, key))
