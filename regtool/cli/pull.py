"""``regtool pull IMAGE [DEST]``: download an image into an OCI layout (a directory) or a docker-archive.

DEST ``-`` writes the docker-archive to stdout, as ``docker save`` without ``-o`` does: the blobs are pulled and
verified into a temporary directory first (a tar's layers must come in order, its blobs arrive concurrently), then
the archive goes out in 1 MiB pieces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, handle_errors, run, stderr, stdout
from regtool.cli.options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    AllPlatforms,
    CaCert,
    Connection,
    ConnectTimeout,
    Insecure,
    Jobs,
    JsonOutput,
    MirrorOption,
    PasswordStdin,
    PlainHttp,
    PlatformOption,
    ProtocolChoice,
    ProtocolOption,
    Quiet,
    RegistriesConfFile,
    Retries,
    TimelineFile,
    Timeout,
    Username,
    Verbose,
    choose_platform,
    configure_logging,
    timeline_recording,
)
from regtool.cli.render import render_pull
from regtool.errors import UsageError
from regtool.reference import Reference

if TYPE_CHECKING:
    from regtool.client.results import PullResult

__all__ = ["STDOUT_DEST", "FormatChoice", "default_dest", "pull", "pull_format"]

# DEST that means standard output, as for ``docker save`` and tar.
STDOUT_DEST = Path("-")


class FormatChoice(StrEnum):
    """``--format``: an OCI image layout directory, or a ``docker save``-style tarball."""

    oci = "oci"
    docker_archive = "docker-archive"


def pull_format(dest: Path | None, requested: FormatChoice | None) -> FormatChoice:
    """``--format`` when given, else docker-archive for a DEST ending in ``.tar`` (or ``-``), else oci."""
    if requested is not None:
        return requested
    if dest is not None and (dest.suffix == ".tar" or dest == STDOUT_DEST):
        return FormatChoice.docker_archive
    return FormatChoice.oci


def default_dest(ref: Reference, fmt: FormatChoice) -> Path:
    """``./<last path component of the repository>``, plus ``.tar`` for a docker-archive."""
    name = ref.repository.rsplit("/", 1)[-1]
    return Path(f"{name}.tar" if fmt is FormatChoice.docker_archive else name)


def _stdout_staging(ref: Reference, fmt: FormatChoice, cleanup: contextlib.ExitStack) -> Path:
    """Where the archive for DEST ``-`` is built: in a temporary directory that ``cleanup`` removes."""
    if fmt is not FormatChoice.docker_archive:
        raise UsageError("DEST - (stdout) takes a docker-archive; an OCI layout is a directory: name one")
    if sys.stdout.isatty():
        raise UsageError("refusing to write a docker-archive to a terminal: redirect stdout, e.g. > app.tar")
    import tempfile  # here: only DEST - needs it

    staging = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="regtool-pull-")))
    return staging / default_dest(ref, fmt).name


def _send_to_stdout(archive: Path) -> None:
    """The archive's bytes to stdout (a closed pipe ends the run quietly, see app.RegtoolGroup)."""
    import shutil

    sys.stdout.flush()
    with archive.open("rb") as source:
        shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()


@app.command()
def pull(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="[host[:port]/]path[:tag]\\[@digest].")],
    dest: Annotated[
        Path | None,
        typer.Argument(
            metavar="DEST",
            help="Where to write: a directory (OCI layout), a .tar file (docker-archive), or - for a "
            "docker-archive on stdout. Default: ./<repository's last component>.",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        FormatChoice | None,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="oci (a directory) or docker-archive (a tarball). Default: from DEST, oci unless it ends in .tar.",
            show_default=False,
        ),
    ] = None,
    platform: PlatformOption = None,
    all_platforms: AllPlatforms = False,
    protocol: ProtocolOption = ProtocolChoice.auto,
    jobs: Jobs = 8,
    v1_jobs: Annotated[
        int,
        typer.Option(
            "--v1-jobs",
            min=1,
            max=64,
            metavar="N",
            help="Over v1, download this many layers at once after the parent chain is known (docker >= 1.10 "
            "did so). Default 1: the faithful serial walk.",
        ),
    ] = 1,
    retries: Retries = 3,
    json_output: JsonOutput = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    timeline: TimelineFile = None,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    registries_conf: RegistriesConfFile = None,
    mirror: MirrorOption = None,
) -> None:
    """Download IMAGE into an OCI layout or a docker-archive, verifying every blob.

    Each blob's digest and size are checked as it streams to disk; nothing unverified stays in DEST.

    Over v2 the config and layers download concurrently (--jobs); over v1 the parent chain is walked serially.
    Over v2 a layout that already holds some blobs only gets the missing ones (v1 names no digest before the
    bytes, so every layer comes again); several tags can share one layout.

    Example: regtool pull localhost:5000/team/app:1.0 ./app
    """
    from regtool.cli.progress import open_progress  # here: rich.progress and the client load per command

    configure_logging(verbose)
    to_stdout = dest == STDOUT_DEST
    # The temporary directory of DEST - lives until the archive has gone out.
    with contextlib.ExitStack() as cleanup:
        with (
            open_progress(json_lines=json_output, quiet=quiet, console=stderr, verbose=verbose) as shown,
            timeline_recording(timeline, shown, title=f"regtool pull {image}", json_lines=json_output) as progress,
        ):

            async def main() -> PullResult:
                ref = Reference.parse(image)
                fmt = pull_format(dest, format)
                if to_stdout:
                    target = _stdout_staging(ref, fmt, cleanup)
                else:
                    target = dest if dest is not None else default_dest(ref, fmt)
                wanted = choose_platform(platform, all_platforms)
                connection = Connection.from_command_line()
                async with connection.client(progress=progress, jobs=jobs, retries=retries) as client:
                    return await client.pull(
                        ref,
                        target,
                        format=fmt.value,
                        platform=wanted,
                        all_platforms=all_platforms,
                        protocol=protocol.value,
                        v1_jobs=v1_jobs,
                    )

            # The library ends with a "summary" progress event (a JSON line under --json).
            result = run(main, json_lines=json_output)
        if to_stdout:
            try:
                _send_to_stdout(Path(result.dest))
            except BrokenPipeError:
                raise  # a reader that stopped reading (``| head``): the run ends quietly, see app.RegtoolGroup
            except OSError as exc:
                with handle_errors(json_lines=json_output):  # stdout on a full disk: one line, not a traceback
                    raise exc from None
            result = dataclasses.replace(result, dest="-")
    if to_stdout:
        # stdout carries the archive, so the result goes to stderr (under --json it was the "summary" event).
        if not json_output:
            render_pull(stderr, result)
    elif json_output:
        emit_json(result.to_json())
    else:
        render_pull(stdout, result)
