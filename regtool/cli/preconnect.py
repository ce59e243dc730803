"""Connections to the registry a command line names, opened while the command's modules are still importing.

A run that talks to a far registry spends its start-up importing (typer, httpx, the client) before its first
request, and that request then waits for a TCP handshake. ``start(argv)``, called by ``main`` before those
imports, reads the command line and, when it names a registry the run will surely contact, has one daemon thread
resolve the host and open one connection for each scheme the run's first request will try there, parked
(``regtool.client.net.parking``) where the Client's connection pool takes them instead of dialling.

The reading is conservative: it knows each registry command's options (a test keeps this table equal to the
commands' own), and anything it does not recognise or the command would refuse (an unknown option, ``--help``,
``--``, a reference that does not parse, a missing argument, a value out of its range, a username without its
password) means no pre-connect; the command then parses and reports as it always did. Hosts
the run might not contact are never dialled: reads go where registries.conf and ``--mirror`` send them (the first
endpoint the run will try; a blocked one is not dialled), ``login`` only without a password prompt, ``logout``,
``sync``, ``serve`` and ``demo`` never.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from regtool.errors import RegtoolError
from regtool.reference import Reference, parse_registry, registry_api_host, split_host_port

__all__ = [
    "CHOICES",
    "COMMAND_SHAPES",
    "EXISTING_FILES",
    "INT_RANGES",
    "POSITIVE_FLOATS",
    "CommandShape",
    "EarlyConnect",
    "Target",
    "early_connect_for",
    "start",
]

_SHARED_FLAGS = frozenset({"--json", "-v", "--verbose", "--plain-http", "--insecure", "--password-stdin"})
_SHARED_VALUES = frozenset({"--ca-cert", "-u", "--username", "--timeout", "--connect-timeout"})
_QUIET = frozenset({"-q", "--quiet"})
_READS = frozenset({"--registries-conf", "--mirror"})
_TRANSFERS = frozenset({"-j", "--jobs", "--retries", "--timeline"})

# Option values the command checks before it connects, checked here alike (a test holds these to the commands'
# declarations): with a value it would refuse, the run ends in a usage error and nothing is dialled.
INT_RANGES = {"-j": (1, 64), "--jobs": (1, 64), "--v1-jobs": (1, 64), "--retries": (0, 100)}
_PROTOCOLS = frozenset({"auto", "v1", "v2"})
CHOICES = {"--protocol": _PROTOCOLS, "--from-protocol": _PROTOCOLS, "--to-protocol": _PROTOCOLS}
CHOICES["--format"] = frozenset({"oci", "docker-archive"})
POSITIVE_FLOATS = frozenset({"--timeout", "--connect-timeout"})
EXISTING_FILES = frozenset({"--ca-cert"})

# What a positional argument is: an image or repository read (registries.conf applies), an image written, a
# registry's host[:port], or a local path.
READ, REPOSITORY, WRITE, REGISTRY, LOCAL = "read", "repository", "write", "registry", "local"


class CommandShape(NamedTuple):
    """A registry command's arguments: ``positionals`` (their kinds, the last ``optional`` of them may be left
    out), its flags and its options that take a value, every spelling."""

    positionals: tuple[str, ...]
    flags: frozenset[str]
    values: frozenset[str]
    optional: int = 0


COMMAND_SHAPES: dict[str, CommandShape] = {
    "pull": CommandShape(
        (READ, LOCAL),
        _SHARED_FLAGS | _QUIET | {"--all-platforms"},
        _SHARED_VALUES | _READS | _TRANSFERS | {"--format", "--platform", "--protocol", "--v1-jobs"},
        optional=1,
    ),
    "copy": CommandShape(
        (READ, WRITE),
        _SHARED_FLAGS | _QUIET | {"--referrers", "--src-password-stdin", "--dest-password-stdin"},
        _SHARED_VALUES
        | _READS
        | _TRANSFERS
        | {"--from-protocol", "--to-protocol", "--platform", "--mount-from", "--chunk-size"}
        | {"--src-username", "--dest-username"},
    ),
    "push": CommandShape(
        (LOCAL, WRITE),
        _SHARED_FLAGS | _QUIET,
        _SHARED_VALUES | _TRANSFERS | {"--mount-from", "--chunk-size", "--protocol"},
    ),
    "inspect": CommandShape(
        (READ,), _SHARED_FLAGS | {"--raw"}, _SHARED_VALUES | _READS | {"--platform", "--protocol", "--retries"}
    ),
    "tags": CommandShape((REPOSITORY,), _SHARED_FLAGS, _SHARED_VALUES | _READS | {"--protocol", "--retries"}),
    "delete": CommandShape((WRITE,), _SHARED_FLAGS, _SHARED_VALUES | {"--protocol", "--retries"}),
    "catalog": CommandShape((REGISTRY,), _SHARED_FLAGS, _SHARED_VALUES | {"--protocol", "--retries"}),
    "probe": CommandShape((REGISTRY,), _SHARED_FLAGS, _SHARED_VALUES),
    "login": CommandShape((REGISTRY,), _SHARED_FLAGS, _SHARED_VALUES),
}


class Target(NamedTuple):
    """A registry the command line names: ``ref`` for an image read (registries.conf may send it elsewhere)."""

    registry: str
    ref: Reference | None = None


class EarlyConnect(NamedTuple):
    """What to open: each target's connections, with the command line's scheme and timeout options."""

    targets: tuple[Target, ...]
    plain_http: bool = False
    insecure: bool = False
    connect_timeout: float | None = None
    registries_conf: str | None = None
    mirrors: tuple[str, ...] = ()


def start(argv: Sequence[str]) -> None:
    """Open the connections ``argv`` (the command and its arguments) will want, in a daemon thread, if any."""
    try:
        plan = early_connect_for(argv, os.environ)
    except Exception:  # the command reads its arguments again, and reports what is wrong with them
        return
    if plan is not None:
        threading.Thread(target=_open, args=(plan,), name="regtool-early-connect", daemon=True).start()


def early_connect_for(argv: Sequence[str], environ: Mapping[str, str]) -> EarlyConnect | None:
    """The connections to open for ``argv``, or None when the command line is not one that surely reaches the
    registries it names."""
    if not argv or argv[0] not in COMMAND_SHAPES:
        return None
    shape = COMMAND_SHAPES[argv[0]]
    read = _read_arguments(argv[1:], shape)
    if read is None:
        return None
    positionals, flags, values = read
    if not _values_valid(values) or not _credentials_complete(argv[0], flags, values, environ):
        return None  # a usage error, or (login) a prompt first that the user may never answer
    targets = []
    for kind, text in zip(shape.positionals, positionals, strict=False):
        target = _target(kind, text)
        if target is None and kind != LOCAL:
            return None
        if target is not None:
            targets.append(target)
    connect_timeout = float(values["--connect-timeout"][-1]) if "--connect-timeout" in values else None
    conf = values.get("--registries-conf")
    return EarlyConnect(
        tuple(targets),
        plain_http="--plain-http" in flags,
        insecure="--insecure" in flags,
        connect_timeout=connect_timeout,
        registries_conf=conf[-1] if conf else None,
        mirrors=tuple(values.get("--mirror", ())),
    )


def _values_valid(values: dict[str, list[str]]) -> bool:
    """Whether every value that ``INT_RANGES``, ``CHOICES``, ``POSITIVE_FLOATS`` and ``EXISTING_FILES`` name is one
    the command accepts."""
    try:
        for name, given in values.items():
            for value in given:
                if name in INT_RANGES:
                    low, high = INT_RANGES[name]
                    if not low <= int(value) <= high:
                        return False
                elif name in CHOICES and value.lower() not in CHOICES[name]:
                    return False
                elif name in POSITIVE_FLOATS and not float(value) > 0:
                    return False
                elif name in EXISTING_FILES and not (os.path.isfile(value) and os.access(value, os.R_OK)):
                    return False
    except ValueError:
        return False
    return True


def _credentials_complete(
    command: str, flags: set[str], values: dict[str, list[str]], environ: Mapping[str, str]
) -> bool:
    """Whether the credentials are as the command requires before it connects: a username with its password and
    a password with its username (``-u``/``REGTOOL_USERNAME`` with ``--password-stdin``/``REGTOOL_PASSWORD``; copy's
    ``--src-``/``--dest-`` pairs with ``REGTOOL_SRC_PASSWORD``/``REGTOOL_DEST_PASSWORD``), one password on stdin at
    most; and for ``login``, which prompts for what is missing, a password given."""
    pairs = [("-u", "--username", "--password-stdin", "REGTOOL_PASSWORD")]
    pairs += [
        (f"--{end}-username", "", f"--{end}-password-stdin", f"REGTOOL_{end.upper()}_PASSWORD")
        for end in ("src", "dest")
    ]
    for short, long, stdin, variable in pairs:
        username = bool(values.get(short) or values.get(long) or (short == "-u" and environ.get("REGTOOL_USERNAME")))
        if username != (stdin in flags or variable in environ):
            return False
    if command == "login" and "--password-stdin" not in flags and "REGTOOL_PASSWORD" not in environ:
        return False
    return sum(flag.endswith("password-stdin") for flag in flags) <= 1


def _read_arguments(
    args: Sequence[str], shape: CommandShape
) -> tuple[list[str], set[str], dict[str, list[str]]] | None:
    """Positionals, flags and option values, as click would read them; None for anything not in ``shape``."""
    positionals: list[str] = []
    flags: set[str] = set()
    values: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-" or not arg.startswith("-"):  # "-": standard output, as pull's DEST
            positionals.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if name in shape.values and (not equals or name.startswith("--")):
            if not equals:  # the value is the next argument, whatever it looks like
                if i == len(args):
                    return None
                value, i = args[i], i + 1
            values.setdefault(name, []).append(value)
        elif not equals and (name in shape.flags or _is_verbose_count(name)):
            flags.add(name)
        else:
            return None
    if not len(shape.positionals) - shape.optional <= len(positionals) <= len(shape.positionals):
        return None
    return positionals, flags, values


def _is_verbose_count(name: str) -> bool:
    """``-vv``, ``-vvv``: click's count option repeated in one argument."""
    return len(name) > 2 and name.strip("v") == "-"


def _target(kind: str, text: str) -> Target | None:
    try:
        if kind == READ:
            ref = Reference.parse(text)
            return Target(ref.registry, ref)
        if kind == REPOSITORY:
            ref = Reference.parse_repository(text)
            return Target(ref.registry, ref)
        if kind == WRITE:
            return Target(Reference.parse(text).registry)
        if kind == REGISTRY:
            return Target(parse_registry(text))
    except RegtoolError:
        pass
    return None


def _open(plan: EarlyConnect) -> None:
    """Dial each target's origins and park the connections (in the daemon thread)."""
    from regtool.client.net import parking
    from regtool.client.net.schemes import candidate_schemes, default_port

    for target in plan.targets:
        try:
            where = _read_from(target, plan)
        except Exception:  # the command meets the same problem and reports it
            return
        if where is None:  # blocked: the run stops there, before it reaches any registry
            return
        registry, insecure = where
        schemes = candidate_schemes(registry, plain_http=plan.plain_http, insecure=plan.insecure or insecure)
        host, port = split_host_port(registry_api_host(registry))
        # One connection per scheme: the first request goes out over every scheme allowed at once (a loopback
        # registry: https and http). The blob connections that follow are dialled by the pull itself while that
        # request is in flight, and are ready as soon as parked ones would be (measured: parking four instead of
        # one changed nothing).
        by_port: dict[int, dict[str, int]] = {}
        for scheme in schemes:
            by_port.setdefault(port if port is not None else default_port(scheme), {})[scheme] = 1
        for each, counts in by_port.items():
            parking.dial_and_park(host, each, counts, plan.connect_timeout or _DIAL_TIMEOUT)


# How long the thread tries to connect without --connect-timeout. It bounds the thread only: a pool that needs an
# origin being dialled waits for that dial no longer than its own connect timeout, then dials itself.
_DIAL_TIMEOUT = 10.0


def _read_from(target: Target, plan: EarlyConnect) -> tuple[str, bool] | None:
    """Where the run reads ``target`` first (registry, insecure): registries.conf's and ``--mirror``'s first
    endpoint for an image read; None when registries.conf blocks it."""
    if target.ref is None:
        return target.registry, False
    from regtool.client import mirrors

    if plan.registries_conf is None and not plan.mirrors and not _may_redirect(mirrors.default_registries_conf()):
        return target.registry, False
    conf = mirrors.load_registries_conf(
        None if plan.registries_conf is None else Path(plan.registries_conf), mirrors=plan.mirrors
    )
    try:
        first = conf.pull_endpoints(target.ref)[0]
    except RegtoolError:  # blocked
        return None
    return first.ref.registry, first.insecure


# A registries.conf sends reads elsewhere only through ``[[registry]]`` tables (or the version 1 format's
# ``[registries.*]``, which the command refuses): a header that names them, or a top-level ``registry = [...]``
# before the first header. Anything else (comments, short-name aliases) is not parsed here.
_REGISTRY_HEADER = re.compile(r"^\s*\[[^\n]*registr", re.MULTILINE)
_TOP_LEVEL_REGISTRY = re.compile(r"""^\s*["']?registr""", re.MULTILINE)
_FIRST_HEADER = re.compile(r"^\s*\[", re.MULTILINE)


def _may_redirect(main: Path | None) -> bool:
    """Whether the default registries.conf or a drop-in that applies over it could change where reads go."""
    from regtool.client import mirrors

    files = [] if main is None else [main]
    files += mirrors.drop_in_files(mirrors.drop_in_directories(main))
    return any(_names_registries(path.read_text(encoding="utf-8")) for path in files)


def _names_registries(text: str) -> bool:
    header = _FIRST_HEADER.search(text)
    top_level = text if header is None else text[: header.start()]
    return bool(_REGISTRY_HEADER.search(text) or _TOP_LEVEL_REGISTRY.search(top_level))
