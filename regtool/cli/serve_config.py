"""``serve --config FILE``: distribution's config.yml under the flags given on the command line.

Every flag has a default, so only the source of a value tells a flag the user gave from one left alone:
click's ``get_parameter_source``. The file's settings come first; each flag given on the command line replaces
the ServerConfig fields it sets (``_FIELDS_OF``: most flags set the field of their own name).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from regtool.cli.console import stderr

__all__ = ["apply_config_file"]

# Flags whose ServerConfig fields are not the field of the flag's own name.
_FIELDS_OF: dict[str, tuple[str, ...]] = {
    "storage": ("storage", "root", "s3"),
    "root": ("storage", "root", "s3"),
    "max_manifest_size": ("max_manifest_bytes",),
    "latency": ("latency_ms",),
    "no_v1": ("enable_v1",),
    "no_v2": ("enable_v2",),
    "quiet": ("access_log",),
    "no_web": ("web",),
    "redis": ("redis_addr", "redis_password"),
    "no_metrics": ("metrics",),
    "proxy_remote": ("proxy_remotes",),
    "proxy_username": ("proxy_remotes",),
    "proxy_password_file": ("proxy_remotes",),
    "s3_endpoint": ("s3",),
    "s3_bucket": ("s3",),
    "s3_region": ("s3",),
    "s3_root": ("s3",),
    "s3_path_style": ("s3",),
    "no_storage_redirect": ("storage_redirect",),
}


def given_flags(ctx: typer.Context) -> set[str]:
    """The parameters of ``ctx`` the user gave (command line or environment), not left at their defaults."""
    from typer._click.core import ParameterSource

    given = {ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT}
    return {name for name in ctx.params if ctx.get_parameter_source(name) in given}


def apply_config_file(path: Path | None, flags: Mapping[str, Any], given: set[str]) -> dict[str, Any]:
    """The ServerConfig fields: ``flags`` alone without a file; else the file's, with the ``given`` flags on top.

    The file's notes (keys that change nothing here, environment variables ignored) are printed on stderr.
    """
    if path is None:
        return dict(flags)
    from regtool.server.configfile import read_config_file

    settings = read_config_file(path)
    merged = dict(settings.values)
    for name in given:
        for field in _FIELDS_OF.get(name, (name,)):
            if field in flags:
                merged[field] = flags[field]
    if "storage" in given and "root" not in given and flags.get("storage") == settings.values.get("storage"):
        # --storage filesystem over a file's filesystem storage: the file says where.
        merged["root"] = settings.values.get("root")
    for note in settings.notes:
        stderr.print(f"regtool serve: {note}", markup=False, highlight=False)
    return merged
