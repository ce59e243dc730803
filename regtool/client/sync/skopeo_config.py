"""skopeo sync's YAML source file (``skopeo sync --src yaml``), read as it is, so users bring their files.

::

    registry.example.com:                # one mapping per source registry (host[:port][/path], as skopeo takes it)
      images:                            # repository -> tags (an empty list: every tag)
        busybox: []
        team/app: ["1.0", "1.1"]
      images-by-tag-regex:               # repository -> one regular expression over its tags
        nginx: ^1\\.2[0-9]\\.
      images-by-semver:                  # repository -> one semver range over its tags
        alpine: ">= 3.18.0 < 3.20.0"
      tls-verify: true                   # false: skip TLS verification (and allow plain HTTP)
      credentials: {username: u, password: p}
      cert-dir: /etc/regtool/certs       # accepted, not honoured (see below)

Honoured: ``images``, ``images-by-tag-regex``, ``images-by-semver``, ``credentials`` (per registry) and
``tls-verify``. Not honoured: ``cert-dir`` (TLS files come from ``--ca-cert`` and docker's
``certs.d/<host>/``; the key is accepted and reported in a warning), and digests in an ``images`` list (a sync
is of tags; such an entry is refused with the file and repository named). Any other key is refused, naming it
and where it is, so that a typo never silently syncs something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.client.net.credentials import Credentials
from regtool.client.sync.endpoints import RegistryEndpoint, join_repository
from regtool.client.sync.plan import SourceSpec, TagFilter, compile_pattern
from regtool.client.sync.semver import SemverRange
from regtool.errors import InvalidReference, UsageError
from regtool.grammar import is_valid_name, is_valid_tag
from regtool.reference import DOCKER_TRANSPORT, parse_registry

__all__ = ["KNOWN_KEYS", "NOT_HONOURED", "SkopeoConfig", "load_skopeo_config", "parse_skopeo_config"]

_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})
KNOWN_KEYS = ("images", "images-by-tag-regex", "images-by-semver", "tls-verify", "credentials", "cert-dir")
NOT_HONOURED = ("cert-dir",)
# Flags a regular expression sets for all of itself, which Python accepts only at its very start.
_LEADING_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


@dataclass(frozen=True, slots=True)
class SkopeoConfig:
    """The sources of a file, and what the run must know beyond them."""

    sources: tuple[SourceSpec, ...]
    # Registries whose tls-verify is false: the client skips verification for those alone.
    insecure_registries: tuple[str, ...]
    warnings: tuple[str, ...]


def load_skopeo_config(path: Path) -> SkopeoConfig:
    """Read and check ``path``; UsageError naming the file (and the key) for anything wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the sync file: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_skopeo_config(text, where=str(path))


def parse_skopeo_config(text: str, *, where: str) -> SkopeoConfig:
    import yaml  # here: only a sync with --config needs it

    # As skopeo's Go decoder fills its string fields: a plain scalar keeps its text, so tags 1.0 and 1.10 stay
    # "1.0" and "1.10" (not the floats 1.0 and 1.1) and a numeric password stays text; booleans (tls-verify)
    # and nulls are still read as such.
    class TextScalarLoader(yaml.SafeLoader):
        pass

    TextScalarLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    try:
        data = yaml.load(text, Loader=TextScalarLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UsageError(f"{where}:{place}: {problem}") from None
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{where}: expected a mapping of registries (skopeo sync's YAML), got {_kind(data)}")
    sources: list[SourceSpec] = []
    insecure: list[str] = []
    warnings: list[str] = []
    for registry_text, body in data.items():
        at = f"{where}: {registry_text}"
        if not isinstance(registry_text, str):
            raise UsageError(f"{where}: registry names are strings, got {registry_text!r}")
        # skopeo names each image REGISTRY/IMAGE, so a key may carry a path (``host:5000/team``) that every
        # repository of it lies below.
        host, _, base = registry_text.strip().removeprefix(DOCKER_TRANSPORT).strip("/").partition("/")
        try:
            registry = parse_registry(host)
        except InvalidReference as exc:
            raise UsageError(f"{at}: {exc}") from None
        if base and not is_valid_name(base):
            raise UsageError(f"{at}: invalid repository path {base!r}")
        if not isinstance(body, dict):
            raise UsageError(f"{at}: expected a mapping, got {_kind(body)}")
        unknown = [str(key) for key in body if key not in KNOWN_KEYS]
        if unknown:
            raise UsageError(
                f"{at}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"(skopeo sync knows {', '.join(KNOWN_KEYS)})"
            )
        endpoint = RegistryEndpoint(registry)
        credentials = _credentials(body.get("credentials"), at)
        tls_verify = body.get("tls-verify", True)
        if not isinstance(tls_verify, bool):
            raise UsageError(f"{at}: tls-verify: expected true or false, got {tls_verify!r}")
        if not tls_verify:
            insecure.append(registry)
        if "cert-dir" in body:
            warnings.append(
                f"{at}: cert-dir is not honoured; give CA certificates with --ca-cert or in docker's "
                f"certs.d/{registry}/"
            )
        found = 0
        for repository, tags in _mapping(body.get("images"), f"{at}: images").items():
            if tags is None:
                tags = []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise UsageError(f"{at}: images: {repository}: expected a list of tags, got {_kind(tags)}")
            for tag in tags:
                if tag.startswith("sha256:") or "@" in tag:
                    raise UsageError(f"{at}: images: {repository}: {tag!r}: digests are not synced, only tags")
                if not is_valid_tag(tag):
                    raise UsageError(f"{at}: images: {repository}: invalid tag {tag!r}")
            names = tuple(tags) if tags else None
            sources.append(
                SourceSpec(endpoint, join_repository(base, repository), TagFilter(names=names), credentials=credentials)
            )
            found += 1
        for repository, pattern in _mapping(body.get("images-by-tag-regex"), f"{at}: images-by-tag-regex").items():
            if not isinstance(pattern, str):
                raise UsageError(f"{at}: images-by-tag-regex: {repository}: expected a regular expression")
            # skopeo searches (Go's MatchString), so the expression matches anywhere in the tag unless anchored;
            # its flags (``(?i)``) stay in front, where Python requires them.
            flags = _LEADING_FLAGS.match(pattern)
            lead = flags.group() if flags else ""
            include = compile_pattern(
                f"{lead}(?:.*(?:{pattern[len(lead) :]}).*)", option=f"{at}: images-by-tag-regex: {repository}"
            )
            sources.append(
                SourceSpec(
                    endpoint, join_repository(base, repository), TagFilter(include=(include,)), credentials=credentials
                )
            )
            found += 1
        for repository, spec in _mapping(body.get("images-by-semver"), f"{at}: images-by-semver").items():
            if not isinstance(spec, str):
                raise UsageError(f"{at}: images-by-semver: {repository}: expected a semver range")
            semver = SemverRange.parse(spec, where=f"{at}: images-by-semver: {repository}")
            sources.append(
                SourceSpec(
                    endpoint, join_repository(base, repository), TagFilter(semver=(semver,)), credentials=credentials
                )
            )
            found += 1
        if not found:
            raise UsageError(f"{at}: names no images (images, images-by-tag-regex or images-by-semver)")
    return SkopeoConfig(tuple(sources), tuple(insecure), tuple(warnings))


def _mapping(value: Any, at: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{at}: expected a mapping of repositories, got {_kind(value)}")
    for repository in value:
        if not isinstance(repository, str) or not is_valid_name(repository):
            raise UsageError(f"{at}: invalid repository name {repository!r}")
    return value


def _credentials(value: Any, at: str) -> Credentials | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UsageError(f"{at}: credentials: expected username and password, got {_kind(value)}")
    unknown = [str(key) for key in value if key not in {"username", "password"}]
    if unknown:
        raise UsageError(f"{at}: credentials: unknown key {', '.join(map(repr, unknown))} (username, password)")
    username, password = value.get("username"), value.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise UsageError(f"{at}: credentials: give both a username and a password (strings)")
    return Credentials(username, password)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
