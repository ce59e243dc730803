"""The two ends of a sync: a registry (with an optional repository path prefix) or a directory of OCI layouts.

A directory end holds one OCI image layout per repository, at ``<dir>/<repository>/`` (``oci-layout``,
``index.json``, ``blobs/``), each tag a ref name of its ``index.json``. Manifests are stored byte for byte, so a
registry -> directory -> registry round trip (an air gap crossed on a disk) ends with the digests it started with.

Which one a text names (``parse_endpoint``): ``dir:PATH`` or ``oci:PATH`` is a directory; so is anything whose first
path component is not a registry host (a host has a ``.`` or a ``:``, or is ``localhost``: the rule docker uses to
tell a registry from a Docker Hub namespace), e.g. ``mirror``, ``./mirror``, ``/srv/mirror``. Everything else is
``HOST[:PORT][/PATH][:TAG]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from regtool.digest import Digest
from regtool.errors import InvalidReference, NotFoundError, UsageError
from regtool.grammar import is_valid_name, is_valid_tag
from regtool.image.oci_layout import REF_NAME_ANNOTATION, OciLayout
from regtool.reference import Reference, official_repository, parse_registry

__all__ = ["DirectoryEndpoint", "Endpoint", "RegistryEndpoint", "join_repository", "parse_endpoint"]

_DIRECTORY_PREFIXES = ("dir:", "oci:")


@dataclass(frozen=True, slots=True)
class RegistryEndpoint:
    """``registry`` (``host[:port]``), a repository ``path`` below it ("" for the whole registry) and, for a
    source, an optional ``tag``."""

    registry: str
    path: str = ""
    tag: str | None = None

    def reference(self, repository: str, tag: str | None = None) -> Reference:
        """Where ``repository`` is asked for (Docker Hub's one-component names are official images); the target
        repository keeps the name as the user wrote it."""
        return Reference(self.registry, official_repository(self.registry, repository), tag)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.path}" if self.path else self.registry
        return f"{text}:{self.tag}" if self.tag else text


@dataclass(frozen=True, slots=True)
class DirectoryEndpoint:
    """A directory holding one OCI layout per repository, at ``root / repository``."""

    root: Path

    def layout_path(self, repository: str) -> Path:
        return self.root / repository

    def open_layout(self, repository: str, *, create: bool = False) -> OciLayout:
        return OciLayout.open(self.layout_path(repository), create=create)

    def repositories(self) -> list[str]:
        """Every repository the directory holds (each directory below the root with an ``oci-layout`` file)."""
        if not self.root.is_dir():
            raise UsageError(f"{self.root}: no such directory")
        found: list[str] = []
        for parent, dirs, files in os.walk(self.root):
            if "oci-layout" in files:
                name = Path(parent).relative_to(self.root).as_posix()
                if name != "." and is_valid_name(name):
                    found.append(name)
                # A layout's own blobs/ holds no further repositories.
                dirs.clear()
        return sorted(found)

    def tags(self, repository: str) -> dict[str, Digest]:
        """Each tag (ref name) of ``repository``'s layout and the digest it names; empty when there is no layout."""
        path = self.layout_path(repository)
        if not (path / "oci-layout").is_file():
            return {}
        found: dict[str, Digest] = {}
        for entry in OciLayout.open(path).entries():
            name = entry.annotations.get(REF_NAME_ANNOTATION)
            if name is not None:
                found[name] = entry.digest
        return found

    def __str__(self) -> str:
        return str(self.root)


Endpoint = RegistryEndpoint | DirectoryEndpoint


def join_repository(prefix: str, repository: str) -> str:
    """``repository`` below the path ``prefix`` (the repository path is kept whole below it)."""
    return f"{prefix}/{repository}" if prefix else repository


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component.lower() == "localhost" or component.startswith("[")


def parse_endpoint(text: str, *, role: str) -> Endpoint:
    """A SOURCE or DEST argument (``role`` names it in errors) as an endpoint; see the module docstring."""
    if not text or text != text.strip():
        raise UsageError(f"{role}: expected a registry or a directory, got {text!r}")
    for prefix in _DIRECTORY_PREFIXES:
        if text.startswith(prefix):
            return DirectoryEndpoint(Path(text[len(prefix) :]))
    body = text.removeprefix("docker://").rstrip("/")
    first, _, rest = body.partition("/")
    if not _looks_like_host(first) or text.startswith((".", "/", "~")):
        return DirectoryEndpoint(Path(text).expanduser())
    tag: str | None = None
    last_colon = rest.rfind(":")
    if rest and last_colon != -1:
        rest, tag = rest[:last_colon], rest[last_colon + 1 :]
        if not is_valid_tag(tag):
            raise InvalidReference(f"{role}: invalid tag {tag!r} in {text!r}")
    try:
        registry = parse_registry(first)
    except InvalidReference as exc:
        raise InvalidReference(f"{role}: {exc}") from None
    if rest and not is_valid_name(rest):
        raise InvalidReference(
            f"{role}: invalid repository path {rest!r} in {text!r}: components are lowercase letters, digits and "
            "separators (. _ __ -)"
        )
    if tag is not None and not rest:
        raise InvalidReference(f"{role}: a tag needs a repository: {text!r}")
    if tag is not None and role == "DEST":
        # Every image keeps its own tag at DEST: a tag there would be dropped without a word.
        raise InvalidReference(f"DEST: {text!r} names a tag; DEST is REGISTRY[/PREFIX] (each image keeps its tag)")
    return RegistryEndpoint(registry, rest, tag)


def layout_digest(endpoint: DirectoryEndpoint, repository: str, tag: str) -> Digest | None:
    """The digest ``tag`` names in ``repository``'s layout, None when the layout or the tag is absent."""
    path = endpoint.layout_path(repository)
    if not (path / "oci-layout").is_file():
        return None
    try:
        return OciLayout.open(path).resolve(tag).digest
    except NotFoundError:
        return None
