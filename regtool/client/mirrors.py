"""Where an image is pulled from: registries.conf (containers-registries.conf(5)) and ``--mirror``.

The file is the one skopeo, podman and buildah read, so a mirror set-up those users already have works unchanged:

- ``[[registry]]`` tables with ``prefix``, ``location``, ``insecure``, ``blocked``, ``mirror-by-digest-only`` and
  ``[[registry.mirror]]`` tables with ``location``, ``insecure``, ``pull-from-mirror``
  (``all`` | ``digest-only`` | ``tag-only``).
- The table whose ``prefix`` is the longest match of the image name (``host[:port][/path...][:tag|@digest]``,
  matched at a ``/``, ``:`` or ``@`` boundary, or ``*.example.com`` for any subdomain) decides: ``blocked``
  refuses the pull, ``location`` replaces the matched prefix (the image keeps its own name), and its mirrors are
  tried first, in order, the primary location last.
- ``unqualified-search-registries``, short-name aliases and credential helpers are about other jobs (regtool
  resolves a short name as docker does, on docker.io) and are ignored; the version 1 format
  (``[registries.search]`` ...) has no mirrors and is refused.

As the man page says, this applies to reading images only: pushes go where their reference says.

Looked up from ``$XDG_CONFIG_HOME/containers/registries.conf`` (default ``~/.config``), then
``/etc/containers/registries.conf``; an explicit file (``--registries-conf``) must exist. ``--mirror URL`` adds
mirrors for every registry for one run, tried before the file's.

Drop-ins (containers-registries.conf.d(5)): after the main file, the ``*.conf`` files of the ``registries.conf.d``
directories are read, each directory's in name order, and a drop-in's ``[[registry]]`` replaces the one with the
same prefix (mirrors and all) or adds to them. Which directories, as containers/image picks them: when the user's
registries.conf is the file read, only the user's ``registries.conf.d``; otherwise (the system's file, none, or
an explicit ``--registries-conf FILE``, as podman's ``CONTAINERS_REGISTRIES_CONF`` and skopeo's
``--registries-conf`` do) ``/etc/containers/registries.conf.d`` and then the user's. There is no ``FILE.d``.
Missing directories are no error; drop-ins must be in the version 2 format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.errors import InvalidReference, UsageError
from regtool.reference import Reference, parse_registry

__all__ = [
    "PULL_FROM_MIRROR",
    "SYSTEM_REGISTRIES_CONF",
    "SYSTEM_REGISTRIES_CONF_D",
    "Endpoint",
    "MirrorEntry",
    "RegistriesConf",
    "RegistryEntry",
    "default_registries_conf",
    "drop_in_directories",
    "drop_in_files",
    "load_registries_conf",
    "parse_mirror_url",
    "parse_registries_conf",
]

logger = logging.getLogger(__name__)

SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")
SYSTEM_REGISTRIES_CONF_D = Path("/etc/containers/registries.conf.d")
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")
# Keys of the format that belong to other jobs than finding where to pull from.
_IGNORED_KEYS = frozenset(
    {
        "unqualified-search-registries",
        "short-name-mode",
        "aliases",
        "credential-helpers",
        "additional-layer-store-auth-helper",
    }
)
_REGISTRY_KEYS = frozenset({"prefix", "location", "insecure", "blocked", "mirror", "mirror-by-digest-only"})
_MIRROR_KEYS = frozenset({"location", "insecure", "pull-from-mirror"})


@dataclass(frozen=True, slots=True)
class MirrorEntry:
    """One ``[[registry.mirror]]`` (or ``--mirror``): where, whether plain HTTP is allowed, for which pulls."""

    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"

    def serves(self, ref: Reference) -> bool:
        """Whether this mirror is asked for ``ref``: ``digest-only`` mirrors for digests, ``tag-only`` for tags."""
        if self.pull_from_mirror == "digest-only":
            return ref.digest is not None
        if self.pull_from_mirror == "tag-only":
            return ref.digest is None
        return True


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One ``[[registry]]`` table; an empty ``location`` (a ``*.`` prefix) leaves the name as it is. ``source``: the
    file it came from (the main file or a drop-in), which messages about it name."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[MirrorEntry, ...] = ()
    source: str = ""

    def match_length(self, name: str) -> int | None:
        """How much of ``name`` this entry's prefix matches, or None (the man page's boundary rule)."""
        if self.prefix.startswith("*."):
            host = name.partition("/")[0]
            hostname = host.rpartition(":")[0] if ":" in host and not host.endswith("]") else host
            return len(hostname) if hostname.endswith(self.prefix[1:]) else None
        if not name.startswith(self.prefix):
            return None
        if len(name) == len(self.prefix) or name[len(self.prefix)] in "/:@":
            return len(self.prefix)
        return None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to pull an image from: the reference there, whether it is a mirror, whether HTTP is allowed."""

    ref: Reference
    mirror: bool = False
    insecure: bool = False

    @property
    def name(self) -> str:
        """``registry/repository``: how ``-v`` and ``--json`` name the endpoint that served something."""
        return self.ref.repository_ref


@dataclass(frozen=True, slots=True)
class RegistriesConf:
    """The parsed file (``source`` names it in messages) and the run's ``--mirror`` entries."""

    registries: tuple[RegistryEntry, ...] = ()
    source: str = "registries.conf"
    extra_mirrors: tuple[MirrorEntry, ...] = ()

    def with_mirrors(self, mirrors: Sequence[MirrorEntry]) -> RegistriesConf:
        return RegistriesConf(self.registries, self.source, (*self.extra_mirrors, *mirrors))

    def updated_by(self, drop_in: RegistriesConf) -> RegistriesConf:
        """This configuration with a drop-in's ``[[registry]]`` tables over it: one with a prefix already here
        replaces that entry whole (its mirrors included), the others are added."""
        replacing = {entry.prefix: entry for entry in drop_in.registries}
        kept = [replacing.pop(entry.prefix, entry) for entry in self.registries]
        return RegistriesConf((*kept, *replacing.values()), self.source, self.extra_mirrors)

    def entry_for(self, ref: Reference) -> tuple[RegistryEntry, int] | None:
        """The entry with the longest matching prefix and the length it matched (the first of equals wins)."""
        name = str(ref)
        best: tuple[RegistryEntry, int] | None = None
        for entry in self.registries:
            length = entry.match_length(name)
            if length is not None and (best is None or len(entry.prefix) > len(best[0].prefix)):
                best = (entry, length)
        return best

    def pull_endpoints(self, ref: Reference) -> tuple[Endpoint, ...]:
        """Where to pull ``ref`` from, in order: ``--mirror`` entries, the matching entry's mirrors (those that
        serve this kind of reference), then the primary location. UsageError when the entry blocks it."""
        found = self.entry_for(ref)
        name = str(ref)
        endpoints = [
            Endpoint(_rewrite(mirror.location, name, len(ref.registry), "--mirror"), True, mirror.insecure)
            for mirror in self.extra_mirrors
            if mirror.serves(ref)
        ]
        if found is None:
            return (*endpoints, Endpoint(ref))
        entry, length = found
        source = entry.source or self.source
        if entry.blocked:
            raise UsageError(f"pulling {ref} is blocked by {source} ([[registry]] prefix {entry.prefix!r})")
        for mirror in entry.mirrors:
            if mirror.serves(ref):
                endpoints.append(Endpoint(_rewrite(mirror.location, name, length, source), True, mirror.insecure))
        primary = ref if not entry.location else _rewrite(entry.location, name, length, source)
        return (*endpoints, Endpoint(primary, False, entry.insecure))


def _rewrite(location: str, name: str, matched: int, source: str) -> Reference:
    """``name`` with its first ``matched`` characters replaced by ``location``."""
    text = location + name[matched:]
    try:
        return Reference.parse(text)
    except InvalidReference as exc:
        raise UsageError(f"{source}: location {location!r} turns {name} into an invalid reference: {exc}") from None


# -- reading the file ---------------------------------------------------------------------------------------


def _user_containers_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")) / "containers"


def default_registries_conf() -> Path | None:
    """The file to read without ``--registries-conf``: the user's, else the system's, else None."""
    for path in (_user_containers_dir() / "registries.conf", SYSTEM_REGISTRIES_CONF):
        if path.is_file():
            return path
    return None


def drop_in_directories(main: Path | None, *, explicit: bool = False) -> tuple[Path, ...]:
    """The ``registries.conf.d`` directories read after ``main`` (the file chosen; ``explicit`` when the user named
    it), in order: the user's file brings only the user's directory, anything else the system's and the user's."""
    user = _user_containers_dir()
    if not explicit and main is not None and main == user / "registries.conf":
        return (user / "registries.conf.d",)
    return (SYSTEM_REGISTRIES_CONF_D, user / "registries.conf.d")


def drop_in_files(directories: Sequence[Path]) -> list[Path]:
    """The ``*.conf`` files of ``directories``, each directory's in name order (subdirectories and other files
    left out); a missing directory has none."""
    files: list[Path] = []
    for directory in directories:
        try:
            entries = sorted(directory.iterdir(), key=lambda p: p.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise UsageError(f"cannot read registries.conf.d directory {directory}: {exc}") from None
        files.extend(p for p in entries if p.name.endswith(".conf") and p.is_file())
    return files


def load_registries_conf(path: Path | None = None, *, mirrors: Sequence[str] = ()) -> RegistriesConf:
    """``path`` (which must exist), or the default file when there is one, then the drop-ins over it
    (``drop_in_directories``), plus ``--mirror`` URLs."""
    extra = tuple(parse_mirror_url(url) for url in mirrors)
    chosen = path if path is not None else default_registries_conf()
    conf = RegistriesConf() if chosen is None else parse_registries_conf(_read(chosen), source=str(chosen))
    for drop_in in drop_in_files(drop_in_directories(chosen, explicit=path is not None)):
        conf = conf.updated_by(parse_registries_conf(_read(drop_in), source=str(drop_in)))
    return conf.with_mirrors(extra)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"registries.conf file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read registries.conf file {path}: {exc}") from None


def parse_registries_conf(text: str, *, source: str = "registries.conf") -> RegistriesConf:
    """Parse the TOML text of a registries.conf; UsageError naming ``source`` and the entry for anything wrong."""
    import tomllib  # here: most command lines run where no registries.conf exists

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    if isinstance(data.get("registries"), dict):
        raise UsageError(
            f"{source} is in the version 1 format ([registries.search], [registries.insecure], "
            "[registries.block]), which has no mirrors: write it as [[registry]] tables (containers-registries.conf(5))"
        )
    for key in sorted(set(data) - {"registry"}):
        if key in _IGNORED_KEYS:
            logger.debug("%s: %s ignored: regtool does not use it to choose where to pull from", source, key)
        else:
            logger.debug("%s: unknown key %r ignored", source, key)
    tables = data.get("registry", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{source}: 'registry' must be an array of tables ([[registry]])")
    entries: list[RegistryEntry] = []
    seen: set[str] = set()
    for number, table in enumerate(tables, start=1):
        entry = _registry_entry(table, f"{source}: [[registry]] #{number}", source)
        # Later tables with the same prefix are never chosen, as in containers/image.
        if entry.prefix not in seen:
            seen.add(entry.prefix)
            entries.append(entry)
    return RegistriesConf(tuple(entries), source)


def _registry_entry(table: Mapping[str, Any], where: str, source: str) -> RegistryEntry:
    _note_unknown(table, _REGISTRY_KEYS, where)
    if "pull-from-mirror" in table:
        raise UsageError(f"{where}: pull-from-mirror belongs in a [[registry.mirror]] table, not in [[registry]]")
    location = _location(table, where, required=False)
    prefix_text = _string(table, "prefix", where)
    if prefix_text is None or prefix_text == "":
        if not location:
            raise UsageError(f"{where}: needs a location or a prefix")
        prefix = location
    elif prefix_text.startswith("*."):
        if any(c in prefix_text for c in "/@:"):
            raise UsageError(f"{where}: a wildcard prefix is a host only (*.example.com), got {prefix_text!r}")
        prefix = prefix_text.lower()
    else:
        prefix = _name(prefix_text, where, "prefix")
        if not location:
            raise UsageError(f"{where}: location is unset and prefix {prefix_text!r} is no *.example.com wildcard")
    by_digest_only = _bool(table, "mirror-by-digest-only", where)
    mirror_tables = table.get("mirror", [])
    if not isinstance(mirror_tables, list) or not all(isinstance(t, dict) for t in mirror_tables):
        raise UsageError(f"{where}: 'mirror' must be an array of tables ([[registry.mirror]])")
    mirrors = []
    for number, mirror_table in enumerate(mirror_tables, start=1):
        mirror_where = f"{where}, [[registry.mirror]] #{number}"
        _note_unknown(mirror_table, _MIRROR_KEYS, mirror_where)
        mirror_location = _location(mirror_table, mirror_where, required=True)
        mode = _string(mirror_table, "pull-from-mirror", mirror_where) or ""
        if mode and by_digest_only:
            raise UsageError(
                f"{mirror_where}: pull-from-mirror and the registry's mirror-by-digest-only exclude each other"
            )
        if mode and mode not in PULL_FROM_MIRROR:
            raise UsageError(f"{mirror_where}: pull-from-mirror must be all, digest-only or tag-only, got {mode!r}")
        mode = "digest-only" if by_digest_only else (mode or "all")
        mirrors.append(MirrorEntry(mirror_location, _bool(mirror_table, "insecure", mirror_where), mode))
    return RegistryEntry(
        prefix=prefix,
        location=location,
        insecure=_bool(table, "insecure", where),
        blocked=_bool(table, "blocked", where),
        mirrors=tuple(mirrors),
        source=source,
    )


def _note_unknown(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    for key in sorted(set(table) - known):
        logger.debug("%s: unknown key %r ignored", where, key)


def _string(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _bool(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _location(table: Mapping[str, Any], where: str, *, required: bool) -> str:
    text = _string(table, "location", where)
    if text is None or text.strip("/") == "":
        if required:
            raise UsageError(f"{where}: location is unset")
        return ""
    if text.startswith(("http://", "https://")):
        raise UsageError(f"{where}: location {text!r} takes no URI scheme (set insecure = true for plain HTTP)")
    return _name(text, where, "location")


def _name(text: str, where: str, key: str) -> str:
    """A ``host[:port][/path...]`` value with its host lowercased (as references keep it); UsageError if bad."""
    value = text.rstrip("/")
    host, sep, path = value.partition("/")
    try:
        registry = parse_registry(host)
        if path:
            # Parsing a reference under the registry checks the path's grammar (a tag or digest may end it).
            Reference.parse(f"{registry}/{path}", default_tag=None)
    except InvalidReference as exc:
        raise UsageError(f"{where}: invalid {key} {text!r}: {exc}") from None
    # The host as typed (lowercased), not docker.io's normalised alias: the prefix is matched against the name.
    return host.lower() + sep + path


def parse_mirror_url(text: str) -> MirrorEntry:
    """``--mirror [http://|https://]host[:port][/path]``: ``http://`` allows plain HTTP (and unverified TLS)."""
    value = text.strip()
    insecure = False
    for scheme in ("http://", "https://"):
        if value.lower().startswith(scheme):
            insecure = scheme == "http://"
            value = value[len(scheme) :]
    if not value.strip("/"):
        raise UsageError(f"--mirror {text!r}: expected [http://]host[:port][/path]")
    return MirrorEntry(_name(value, f"--mirror {text!r}", "mirror"), insecure)
