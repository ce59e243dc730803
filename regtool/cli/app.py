"""The typer application every command module registers itself on."""

from __future__ import annotations

import typer

from regtool.__about__ import __version__

__all__ = ["app"]

app = typer.Typer(
    name="regtool",
    help="Move container images between registries and disk, over registry v1 and v2 / OCI.",
    no_args_is_help=True,
    # Completion scripts are generated into completions/ (python -m regtool.cli.completions), not installed
    # by typer at run time.
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"regtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Move container images between registries and disk, over registry v1 and v2 / OCI."""
