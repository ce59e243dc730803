"""Options shared by the commands, as ``Annotated`` aliases, and the values they turn into.

A command lists the aliases it needs as parameters (typer reads them from the signature) and then builds a
:class:`Connection` (how to reach registries) and an :class:`Output` (what to show) from them. Passwords are never
option values: they come from ``--password-stdin`` or the ``REGTOOL_PASSWORD`` environment variable, so they stay
out of shell history and ``ps``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from regtool.errors import UsageError
from regtool.manifest import Platform
from regtool.platform import parse_platform

if TYPE_CHECKING:
    from regtool.client import Client
    from regtool.client.mirrors import RegistriesConf
    from regtool.client.progress import Progress

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "AllPlatforms",
    "CaCert",
    "ChunkSize",
    "ConnectTimeout",
    "Connection",
    "Insecure",
    "Jobs",
    "JsonOutput",
    "MirrorOption",
    "Output",
    "PasswordStdin",
    "PlainHttp",
    "PlatformOption",
    "ProtocolChoice",
    "ProtocolOption",
    "Quiet",
    "RegistriesConfFile",
    "Retries",
    "TimelineFile",
    "Timeout",
    "Username",
    "Verbose",
    "choose_platform",
    "configure_logging",
    "timeline_recording",
    "warn_insecure",
]

_NET = "Connection"
_OUT = "Output"

PlainHttp = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        help="Use plain HTTP for a registry that is not on loopback (loopback hosts use it automatically).",
        rich_help_panel=_NET,
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Skip TLS certificate verification (and allow plain HTTP).",
        rich_help_panel=_NET,
    ),
]
CaCert = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        metavar="FILE",
        help="PEM file of CA certificates to trust for TLS.",
        exists=True,
        dir_okay=False,
        readable=True,
        rich_help_panel=_NET,
    ),
]
RegistriesConfFile = Annotated[
    Path | None,
    typer.Option(
        "--registries-conf",
        metavar="FILE",
        help="registries.conf (containers-registries.conf(5)) with mirrors, location rewrites and blocked "
        "registries for reading images. Default: $XDG_CONFIG_HOME/containers/registries.conf, else "
        "/etc/containers/registries.conf. The registries.conf.d drop-ins apply over it.",
        dir_okay=False,
        rich_help_panel=_NET,
        show_default=False,
    ),
]
MirrorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mirror",
        metavar="URL",
        help="A mirror to read images from before their registry ([http://]host[:port][/path]; http:// allows "
        "plain HTTP); repeatable, tried in order, before registries.conf's.",
        rich_help_panel=_NET,
        show_default=False,
    ),
]
Username = Annotated[
    str | None,
    typer.Option(
        "-u",
        "--username",
        metavar="USER",
        envvar="REGTOOL_USERNAME",
        help="Username for the registry; the password comes from --password-stdin or REGTOOL_PASSWORD.",
        rich_help_panel=_NET,
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input.",
        rich_help_panel=_NET,
    ),
]
Verbose = Annotated[
    int,
    typer.Option(
        "-v",
        "--verbose",
        count=True,
        # A counter takes no value: without this the help shows typer's "<int>" as if -v wanted one.
        metavar="",
        help="Log what the library does on stderr (requests, retries); -vv adds HTTP internals.",
        rich_help_panel=_OUT,
        show_default=False,
    ),
]
JsonOutput = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the result as JSON on stdout; progress becomes JSON-lines events on stderr.",
        rich_help_panel=_OUT,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("-q", "--quiet", help="Show no progress.", rich_help_panel=_OUT),
]
TimelineFile = Annotated[
    Path | None,
    typer.Option(
        "--timeline",
        metavar="FILE",
        help="Record every request and transfer of the run: FILE.svg draws them as a waterfall, FILE.json keeps "
        "the raw events. Written also when the command fails.",
        rich_help_panel=_OUT,
        show_default=False,
    ),
]
Jobs = Annotated[
    int,
    typer.Option(
        "-j",
        "--jobs",
        min=1,
        max=64,
        metavar="N",
        help="Large blobs transferred at once; up to four small ones (2 MiB or less) take the place of each.",
    ),
]
# push and copy: parsed with ``regtool.cli.push.parse_size``.
ChunkSize = Annotated[
    str | None,
    typer.Option(
        "--chunk-size",
        metavar="SIZE",
        help="Upload blobs larger than SIZE in chunks of SIZE (e.g. 16MiB). Default: 256MiB.",
        show_default=False,
    ),
]

# How often an idempotent request is retried (connection errors, timeouts, 408/429/5xx).
Retries = Annotated[
    int,
    typer.Option(
        "--retries",
        min=0,
        max=100,
        metavar="N",
        help="Retries of a failed request (connection errors, timeouts, 408/429/5xx), with backoff; 0 disables.",
        rich_help_panel=_NET,
    ),
]

# Seconds. A connection (TCP and TLS) to a registry that is up takes milliseconds; 10 s leaves room for a slow
# network without hanging on a host that drops packets. 30 s of silence is far longer than any registry needs to
# start answering or to send the next bytes of a body, yet short enough that a hung server fails in under a minute.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 30.0

Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Give up on a request when the registry sends nothing for this long (an answer, or the next bytes of "
        "a body); --retries then applies.",
        rich_help_panel=_NET,
    ),
]
ConnectTimeout = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        metavar="SECONDS",
        help="Give up on connecting to a registry (TCP and TLS handshake) after this long.",
        rich_help_panel=_NET,
    ),
]


class ProtocolChoice(StrEnum):
    """``--protocol``: which registry API to speak; ``auto`` probes (v2 when present, else v1)."""

    auto = "auto"
    v1 = "v1"
    v2 = "v2"


ProtocolOption = Annotated[
    ProtocolChoice,
    typer.Option(
        "--protocol",
        case_sensitive=False,
        help="Registry API to use: auto probes the registry (v2 when it has it, else v1).",
    ),
]
PlatformOption = Annotated[
    str | None,
    typer.Option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Manifest to pick from a multi-platform index (default: this machine's, e.g. linux/amd64).",
    ),
]
AllPlatforms = Annotated[
    bool,
    typer.Option("--all-platforms", help="Keep every platform of a multi-platform index."),
]


def choose_platform(platform: str | None, all_platforms: bool) -> Platform | None:
    """The Platform asked for with ``--platform``; UsageError when combined with ``--all-platforms``."""
    if platform is not None and all_platforms:
        raise UsageError("--platform and --all-platforms exclude each other")
    return None if platform is None else parse_platform(platform)


def _read_password_stdin() -> str:
    if sys.stdin is None or sys.stdin.closed:
        raise UsageError("--password-stdin given but standard input is closed")
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin given but standard input held no password")
    return password


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach registries: TLS, plain HTTP, credentials, timeouts. ``repr`` never shows the password."""

    plain_http: bool = False
    insecure: bool = False
    ca_cert: Path | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # Where images are read from: None leaves references as they are (commands without --registries-conf);
    # a RegistriesConf comes from the file (or the default one) and --mirror.
    registries: RegistriesConf | None = None

    @classmethod
    def from_options(
        cls,
        *,
        plain_http: bool,
        insecure: bool,
        ca_cert: Path | None,
        username: str | None,
        password_stdin: bool,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reads_images: bool = False,
        registries_conf: Path | None = None,
        mirrors: Sequence[str] | None = None,
    ) -> Connection:
        """Collect the connection options; the password from stdin or ``REGTOOL_PASSWORD``. A command that
        ``reads_images`` (pull, copy, inspect, tags) reads registries.conf (``registries_conf``, else the default
        file) and takes ``--mirror`` URLs (``mirrors``)."""
        for name, seconds in (("--timeout", timeout), ("--connect-timeout", connect_timeout)):
            if not seconds > 0:
                raise UsageError(f"{name} must be more than 0 seconds, got {seconds:g}")
        password: str | None = None
        if password_stdin:
            password = _read_password_stdin()
        elif "REGTOOL_PASSWORD" in os.environ:
            password = os.environ["REGTOOL_PASSWORD"]
        if password is not None and not username:
            raise UsageError("a password was given without a username (-u/--username or REGTOOL_USERNAME)")
        if username and password is None:
            raise UsageError(f"no password for user {username!r}: use --password-stdin or set REGTOOL_PASSWORD")
        registries = None
        if reads_images:
            from regtool.client.mirrors import load_registries_conf

            registries = load_registries_conf(registries_conf, mirrors=mirrors or ())
        return cls(plain_http, insecure, ca_cert, username or None, password, timeout, connect_timeout, registries)

    @classmethod
    def from_command_line(cls) -> Connection:
        """``from_options`` over the connection options the running command was given (its parsed parameters).

        Every registry command declares the same options under the same names; a command that reads images also
        declares ``--registries-conf`` and ``--mirror``, and so reads registries.conf.
        """
        from typer._click.globals import get_current_context  # typer vendors click; 0.28 is pinned

        params = get_current_context().params
        reads_images = "registries_conf" in params
        # click holds the values as parsed; typer makes Paths of them only for the command's own arguments.
        ca_cert, registries_conf = (params.get(name) for name in ("ca_cert", "registries_conf"))
        return cls.from_options(
            plain_http=params["plain_http"],
            insecure=params["insecure"],
            ca_cert=None if ca_cert is None else Path(ca_cert),
            username=params["username"],
            password_stdin=params["password_stdin"],
            timeout=params["timeout"],
            connect_timeout=params["connect_timeout"],
            reads_images=reads_images,
            registries_conf=None if registries_conf is None else Path(registries_conf),
            mirrors=params.get("mirror"),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`regtool.client.Client`."""
        return {
            "plain_http": self.plain_http,
            "insecure": self.insecure,
            "ca_cert": self.ca_cert,
            "username": self.username,
            "password": self.password,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
        } | ({} if self.registries is None else {"registries": self.registries})

    def client(
        self,
        *,
        progress: Progress | None = None,
        jobs: int | None = None,
        retries: int | None = None,
        rate_limit_floor: int | None = None,
    ) -> Client:
        """A :class:`regtool.client.Client` for these options (use it as ``async with``)."""
        from regtool.client import Client  # imported here: ``regtool --help`` need not load httpx

        kwargs = self.client_kwargs()
        if progress is not None:
            kwargs["progress"] = progress
        if jobs is not None:
            kwargs["jobs"] = jobs
        if retries is not None:
            kwargs["retries"] = retries
        if rate_limit_floor is not None:
            kwargs["rate_limit_floor"] = rate_limit_floor
        if self.insecure:
            warn_insecure()
        return Client(**kwargs)

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (
            f"Connection(plain_http={self.plain_http}, insecure={self.insecure}, ca_cert={self.ca_cert}, "
            f"username={self.username!r}, password={password!r}, timeout={self.timeout}, "
            f"connect_timeout={self.connect_timeout})"
        )


def warn_insecure() -> None:
    """``--insecure`` says so on stderr (a JSON ``warning`` event under ``--json``)."""
    from regtool.cli.console import warn

    warn("--insecure: TLS certificates are not verified; anyone on the network path can read and alter traffic")


@dataclass(frozen=True, slots=True)
class Output:
    """What the user asked to see: ``json`` results (and JSON-lines progress), ``quiet``, ``verbose`` logging."""

    json: bool = False
    quiet: bool = False
    verbose: int = 0


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so log lines go above rich's live progress bars
    (which redirect stderr while they are shown) instead of through them."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(verbose: int) -> None:
    """``-v``: regtool's loggers at DEBUG and httpx's request lines; ``-vv``: httpx's debug lines too. All on
    stderr. (httpcore has nothing to log: the client's transport is its own, net/connections.py.)"""
    if verbose <= 0:
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
    levels = {"regtool": logging.DEBUG, "httpx": logging.INFO if verbose == 1 else logging.DEBUG}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False


@contextmanager
def timeline_recording(
    path: Path | None, progress: Progress, *, title: str, json_lines: bool = False
) -> Iterator[Progress]:
    """``--timeline FILE``: ``progress`` wrapped in a recorder whose waterfall (or events) is written to FILE when
    the block ends, failed or not (``regtool.cli.waterfall.recording``); without FILE, ``progress`` itself."""
    if path is None:
        yield progress
        return
    from regtool.cli.waterfall import recording  # here: nothing of the timeline loads without --timeline

    with recording(path, progress, title=title, json_lines=json_lines) as recorder:
        yield recorder
