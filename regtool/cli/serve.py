"""``regtool serve``: run the registry (v2 / OCI, and v1) on HOST:PORT until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from regtool.cli.app import app
from regtool.cli.console import fail, stderr

__all__ = ["serve"]

StorageOption = Annotated[str, typer.Option("--storage", help="filesystem (under --root) or inmemory.")]


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 5000,
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Storage directory (default: a per-user data directory, printed at start)."),
    ] = None,
    storage: StorageOption = "filesystem",
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse pushes and deletes.")] = False,
    max_manifest_size: Annotated[
        int, typer.Option("--max-manifest-size", min=1, help="Largest manifest accepted, in bytes (413 above).")
    ] = 4 * 1024 * 1024,
    latency: Annotated[
        float, typer.Option("--latency", min=0, help="Add this many milliseconds to every request (demos).")
    ] = 0.0,
    no_v1: Annotated[bool, typer.Option("--no-v1", help="Disable the v1 API (404 on /v1/).")] = False,
    no_v2: Annotated[bool, typer.Option("--no-v2", help="Disable the v2 API (404 on /v2/).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No access log on stderr.")] = False,
) -> None:
    """Run a registry speaking v2 / OCI distribution (and v1) until interrupted."""
    from regtool.errors import UsageError
    from regtool.server import ServerConfig, create_app, runner
    from regtool.server.config import default_root

    if storage not in ("filesystem", "inmemory"):
        fail(f"--storage must be filesystem or inmemory, not {storage!r}", 2)
    if no_v1 and no_v2:
        fail("--no-v1 and --no-v2 together leave nothing to serve", 2)
    data_root = None if storage == "inmemory" else (root or default_root()).expanduser().resolve()
    try:
        config = ServerConfig(
            host=host,
            port=port,
            root=data_root,
            storage="inmemory" if storage == "inmemory" else "filesystem",
            read_only=read_only,
            max_manifest_bytes=max_manifest_size,
            enable_v1=not no_v1,
            enable_v2=not no_v2,
            latency_ms=latency,
            access_log=not quiet,
        )
        application = create_app(config)
    except (UsageError, OSError) as exc:
        fail(str(exc), 2)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for name in ("regtool.server.access", "regtool.server"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    apis = " + ".join(api for api, on in (("v2", not no_v2), ("v1", not no_v1)) if on)
    where = "in memory" if data_root is None else f"root {data_root}"
    stderr.print(f"regtool serve: http://{host}:{port} ({apis}), {where}")
    try:
        runner.run(application, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    stderr.print("regtool serve: stopped")
