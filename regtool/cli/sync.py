"""``regtool sync SOURCE DEST``: mirror repositories and tags between registries and directories (client/sync/)."""

from __future__ import annotations

import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from regtool.cli.app import app
from regtool.cli.console import emit_json, fail, run, stderr, stdout, warn
from regtool.cli.options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    CaCert,
    Connection,
    ConnectTimeout,
    Insecure,
    JsonOutput,
    MirrorOption,
    PasswordStdin,
    PlainHttp,
    Quiet,
    RegistriesConfFile,
    Retries,
    TimelineFile,
    Timeout,
    Username,
    Verbose,
    configure_logging,
    timeline_recording,
)
from regtool.cli.units import format_bytes
from regtool.errors import UsageError

if TYPE_CHECKING:
    from regtool.cli.bars import RichProgress
    from regtool.client.progress import Progress
    from regtool.client.sync.engine import SyncOptions, SyncResult
    from regtool.client.sync.plan import SourceSpec
    from regtool.client.sync.skopeo_config import SkopeoConfig

__all__ = ["ImageLines", "OneBarPerBlob", "image_line", "sync"]

_FILTERS = "Filters"
_MODE = "Sync"

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="A skopeo sync YAML file naming the sources (registry: images, images-by-tag-regex, images-by-semver, "
        "tls-verify, credentials); then give only DEST.",
        dir_okay=False,
        rich_help_panel=_FILTERS,
    ),
]
Repos = Annotated[
    str | None,
    typer.Option(
        "--repos",
        metavar="REGEX",
        help="With a whole registry or directory as SOURCE: only the repositories this matches (whole name).",
        rich_help_panel=_FILTERS,
    ),
]
Tags = Annotated[
    str | None,
    typer.Option("--tags", metavar="REGEX", help="Only tags this matches (the whole tag).", rich_help_panel=_FILTERS),
]
Exclude = Annotated[
    str | None,
    typer.Option(
        "--exclude", metavar="REGEX", help="Leave out tags this matches (the whole tag).", rich_help_panel=_FILTERS
    ),
]
Semver = Annotated[
    str | None,
    typer.Option(
        "--semver",
        metavar="RANGE",
        help="Only tags whose version is in RANGE (e.g. '>=1.2 <2', '^1.4', '~2.0'); other tags are left out.",
        rich_help_panel=_FILTERS,
    ),
]
Platforms = Annotated[
    str | None,
    typer.Option(
        "--platform",
        metavar="OS/ARCH[,...]",
        help="Copy only these platforms of a multi-platform index, as a trimmed index (a new digest). "
        "Default: every platform.",
        rich_help_panel=_FILTERS,
    ),
]
PreserveDigests = Annotated[
    bool,
    typer.Option(
        "--preserve-digests",
        help="Refuse any change of digest (a --platform trim fails instead).",
        rich_help_panel=_MODE,
    ),
]
NoReferrers = Annotated[
    bool,
    typer.Option("--no-referrers", help="Leave signatures, SBOMs and attestations behind.", rich_help_panel=_MODE),
]
ArtifactType = Annotated[
    list[str] | None,
    typer.Option(
        "--artifact-type",
        metavar="TYPE",
        help="Copy only referrers of this artifact type (repeatable).",
        rich_help_panel=_MODE,
    ),
]
ReferrersRecheck = Annotated[
    bool,
    typer.Option(
        "--referrers-recheck",
        help="Also ask SOURCE for the referrers of every tag DEST has already, and copy the ones DEST lacks (a "
        "signature attached later by the referrers API alone). Costs per unchanged tag: one referrers request at "
        "a registry SOURCE plus one per referrer found, and one HEAD per referrer found at a registry DEST.",
        rich_help_panel=_MODE,
    ),
]
ImmutableTags = Annotated[
    bool,
    typer.Option(
        "--immutable-tags",
        help="A tag DEST has already is skipped without asking SOURCE (tags never move).",
        rich_help_panel=_MODE,
    ),
]
Prune = Annotated[
    bool,
    typer.Option(
        "--prune",
        help="Delete DEST tags that SOURCE no longer has, among those the filters take, in the repositories being "
        "synced (other DEST tags are left alone).",
        rich_help_panel=_MODE,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Show what would be copied, skipped and pruned; write nothing.", rich_help_panel=_MODE
    ),
]
KeepGoing = Annotated[
    bool,
    typer.Option(
        "--keep-going",
        help="Go on past a failed image; exit non-zero at the end, naming each failure.",
        rich_help_panel=_MODE,
    ),
]
RateLimitFloor = Annotated[
    int | None,
    typer.Option(
        "--rate-limit-floor",
        metavar="N",
        min=0,
        help="Keep N requests of a quota a registry states (RateLimit-Remaining, Docker Hub's ratelimit-remaining) "
        "in hand: slow down near it, pause at it until the quota refills.",
        rich_help_panel=_MODE,
    ),
]


SyncJobs = Annotated[
    int,
    typer.Option(
        "-j",
        "--jobs",
        min=1,
        max=64,
        metavar="N",
        help="Tags copied at once (4N compared at once), each moving up to N large blobs or four small ones for each.",
    ),
]


def image_line(outcome: dict[str, Any]) -> str:
    """One image's line: status, source -> target, bytes moved, and what a reader must know (a trimmed digest)."""
    status = outcome["status"]
    text = f"{status:<11} {outcome['source']} -> {outcome['target']}"
    if status in {"copied", "mounted"}:
        text += f"  {format_bytes(outcome['bytes'])}"
        if outcome["blobs_mounted"]:
            text += f" ({outcome['blobs_mounted']} blob(s) mounted)"
    if outcome.get("referrers"):
        text += f"  {outcome['referrers']} referrer(s) copied"
    if outcome.get("referrers_missing"):
        text += f"  would copy referrer(s): {', '.join(outcome['referrers_missing'])}"
    if outcome.get("trimmed") and status != "failed":
        text += f"  platforms trimmed: digest {outcome['source_digest']} becomes {outcome['digest']}"
    if status == "failed":
        text += f": {outcome['error']}"
    return text


class ImageLines:
    """A Progress that prints each ``sync`` event as an image line on stdout and passes every call on; on a
    terminal it also counts the images on the bars' ``total`` line, beside the bytes, rate and ETA."""

    def __init__(self, inner: Progress, bars: RichProgress | None = None) -> None:
        self._inner = inner
        self._bars = bars
        self._images = 0
        self._done = 0

    def start(self, key: str, description: str, total: int | None) -> None:
        self._inner.start(key, description, total)

    def advance(self, key: str, nbytes: int) -> None:
        self._inner.advance(key, nbytes)

    def finish(self, key: str, *, status: str = "done") -> None:
        self._inner.finish(key, status=status)

    def event(self, name: str, **fields: Any) -> None:
        if name == "sync":
            stdout.print(image_line(fields), markup=False, highlight=False, emoji=False)
            self._done += 1
        elif name == "sync-plan":
            self._images = int(fields.get("images") or 0)
        if self._bars is not None and name in {"sync", "sync-plan"}:
            self._bars.label_total(f"{self._done}/{self._images} images")
        self._inner.event(name, **fields)


class OneBarPerBlob:
    """Bars for transfers keyed by digest, when several images move the same blob at once (a shared base layer
    copied to two repositories): one bar from the first start to the last finish, instead of bars left behind."""

    def __init__(self, inner: Progress) -> None:
        self._inner = inner
        self._active: dict[str, int] = {}
        # Bytes the bar may still take: two transfers of one blob must not fill it twice.
        self._room: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def start(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            first = key not in self._active
            self._active[key] = self._active.get(key, 0) + 1
            if first:
                self._room[key] = total
        if first:
            self._inner.start(key, description, total)

    def advance(self, key: str, nbytes: int) -> None:
        with self._lock:
            room = self._room.get(key)
            if room is not None:
                nbytes = min(nbytes, room)
                self._room[key] = room - nbytes
        if nbytes:
            self._inner.advance(key, nbytes)

    def finish(self, key: str, *, status: str = "done") -> None:
        with self._lock:
            left = self._active.get(key, 1) - 1
            if left > 0:
                self._active[key] = left
            else:
                self._active.pop(key, None)
                self._room.pop(key, None)
        if left <= 0:
            self._inner.finish(key, status=status)

    def event(self, name: str, **fields: Any) -> None:
        self._inner.event(name, **fields)


def _bars_of(shown: Progress) -> RichProgress | None:
    """The terminal's bars behind ``shown``, when it has them (``open_progress`` wraps them in HumanEvents)."""
    from regtool.cli.progress import HumanEvents

    # bars.py is loaded only when a terminal shows bars: without it there are none to find.
    if "regtool.cli.bars" not in sys.modules or not isinstance(shown, HumanEvents):
        return None
    from regtool.cli.bars import RichProgress

    return shown.inner if isinstance(shown.inner, RichProgress) else None


def _summary_line(result: SyncResult) -> str:
    data = result.to_json()
    parts = [
        f"{data[key]} {label}"
        for key, label in (
            ("copied", "copied"),
            ("mounted", "mounted"),
            ("skipped", "skipped"),
            ("would_copy", "to copy"),
            ("pruned", "pruned"),
            ("would_prune", "to prune"),
            ("failed", "failed"),
        )
        if data[key]
    ]
    done = ", ".join(parts) or "nothing to do"
    moved = f"{format_bytes(data['bytes'])} in {data['seconds']:.2f} s"
    line = f"{'dry run: ' if result.dry_run else ''}{data['images']} image(s): {done}; {moved}"
    if data["referrers_rechecked"]:
        line += (
            f"; referrers rechecked for {data['referrers_rechecked']} unchanged tag(s): "
            f"{data['recheck_requests']} request(s)"
        )
    return line


def _sources(
    source: str | None,
    config: SkopeoConfig | None,
    *,
    repos: str | None,
    tags: str | None,
    exclude: str | None,
    semver: str | None,
) -> list[SourceSpec]:
    from regtool.client.sync.endpoints import RegistryEndpoint, parse_endpoint
    from regtool.client.sync.plan import SourceSpec, TagFilter, compile_pattern
    from regtool.client.sync.semver import SemverRange

    extra = TagFilter(
        include=(compile_pattern(tags, option="--tags"),) if tags is not None else (),
        exclude=(compile_pattern(exclude, option="--exclude"),) if exclude is not None else (),
        semver=(SemverRange.parse(semver, where="--semver"),) if semver is not None else (),
    )
    repos_pattern = compile_pattern(repos, option="--repos") if repos is not None else None
    if config is not None:
        # The file's choice of tags, narrowed by the command line's filters.
        return [replace(spec, tags=spec.tags.narrowed(extra)) for spec in config.sources]
    assert source is not None
    endpoint = parse_endpoint(source, role="SOURCE")
    names = None
    if isinstance(endpoint, RegistryEndpoint) and endpoint.tag is not None:
        names = (endpoint.tag,)
        endpoint = RegistryEndpoint(endpoint.registry, endpoint.path)
    if repos_pattern is not None and isinstance(endpoint, RegistryEndpoint) and endpoint.path:
        raise UsageError("--repos chooses among a whole registry's repositories: give SOURCE as a registry")
    return [SourceSpec(endpoint, None, TagFilter(names=names).narrowed(extra), repos=repos_pattern)]


@app.command()
def sync(
    source_arg: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="REGISTRY/REPO[:TAG], a whole REGISTRY, or a directory a sync wrote (with --config: DEST).",
        ),
    ],
    dest_arg: Annotated[
        str | None,
        typer.Argument(metavar="DEST", help="REGISTRY[/PREFIX], or a directory (one OCI layout per repository)."),
    ] = None,
    config: ConfigFile = None,
    repos: Repos = None,
    tags: Tags = None,
    exclude: Exclude = None,
    semver: Semver = None,
    platform: Platforms = None,
    preserve_digests: PreserveDigests = False,
    no_referrers: NoReferrers = False,
    artifact_type: ArtifactType = None,
    referrers_recheck: ReferrersRecheck = False,
    immutable_tags: ImmutableTags = False,
    prune: Prune = False,
    dry_run: DryRun = False,
    keep_going: KeepGoing = False,
    rate_limit_floor: RateLimitFloor = None,
    jobs: SyncJobs = 8,
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
    """Mirror repositories and tags from SOURCE to DEST, copying only what changed.

    Each tag costs one HEAD at each end when DEST is up to date (--referrers-recheck adds the referrers requests
    it names). Blobs DEST has are skipped, blobs in another DEST repository are mounted; manifests keep their
    bytes, so digests are kept (registry -> directory -> registry too). One line per image (copied, mounted,
    skipped, failed). Ctrl-C stops; the next run resumes.

    Example: regtool sync registry.example.com/team/app localhost:5000/mirror
    """
    from regtool.cli.progress import open_progress  # here: rich.progress and the client load per command

    configure_logging(verbose)
    with (
        # Off a terminal the image lines are the output: no line per blob besides them.
        open_progress(
            json_lines=json_output,
            quiet=quiet or (not json_output and not stderr.is_terminal),
            console=stderr,
            verbose=verbose,
        ) as shown,
        timeline_recording(
            timeline,
            shown if _bars_of(shown) is None else OneBarPerBlob(shown),
            title=f"regtool sync {source_arg} {dest_arg or ''}".strip(),
            json_lines=json_output,
        ) as recorded,
    ):
        progress: Progress = recorded if json_output else ImageLines(recorded, _bars_of(shown))

        async def main() -> SyncResult:
            from regtool.client.sync.endpoints import parse_endpoint
            from regtool.client.sync.engine import SyncEngine
            from regtool.client.sync.skopeo_config import load_skopeo_config

            skopeo = None
            source: str | None = source_arg
            dest = dest_arg
            if config is not None:
                if repos is not None:
                    raise UsageError("--repos chooses among a whole registry's repositories; a sync file names its own")
                if dest is not None:
                    raise UsageError("with --config the sources come from the file: give only DEST")
                source, dest, skopeo = None, source_arg, load_skopeo_config(config)
                for message in skopeo.warnings:
                    warn(message)
            elif dest is None:
                raise UsageError("missing DEST: regtool sync SOURCE DEST (or --config FILE DEST)")
            assert dest is not None
            target = parse_endpoint(dest, role="DEST")
            specs = _sources(source, skopeo, repos=repos, tags=tags, exclude=exclude, semver=semver)
            options = _options(
                platform,
                preserve_digests=preserve_digests,
                referrers=not no_referrers,
                artifact_types=tuple(artifact_type or ()),
                referrers_recheck=referrers_recheck,
                immutable_tags=immutable_tags,
                prune=prune,
                dry_run=dry_run,
                keep_going=keep_going,
                images=jobs,
            )
            connection = Connection.from_command_line()
            async with connection.client(
                progress=progress, jobs=jobs, retries=retries, rate_limit_floor=rate_limit_floor
            ) as client:
                for registry in skopeo.insecure_registries if skopeo is not None else ():
                    warn(f"tls-verify: false: TLS certificates of {registry} are not verified")
                    client.allow_insecure(registry)
                return await SyncEngine(client, target, options).run(specs)

        result = run(main, json_lines=json_output)
    if json_output:
        emit_json({**result.to_json(), "results": [o.to_json() for o in (*result.images, *result.pruned)]})
    elif not quiet:
        stdout.print(_summary_line(result), markup=False, highlight=False, emoji=False)
    failures = result.failures
    if failures:
        codes = {o.exit_code or 1 for o in failures}
        named = "; ".join(f"{o.source}: {o.error}" for o in failures)
        fail(
            f"{len(failures)} of {len(result.images) + len(result.pruned)} failed: {named}",
            codes.pop() if len(codes) == 1 else 1,
            json_lines=json_output,
        )


def _options(platform: str | None, **fields: Any) -> SyncOptions:
    from regtool.client.sync.engine import SyncOptions
    from regtool.platform import parse_platform

    platforms = tuple(parse_platform(p.strip()) for p in platform.split(",")) if platform else ()
    if fields["preserve_digests"] and not platforms:
        fields["preserve_digests"] = False
    return SyncOptions(platforms=platforms, **fields)
