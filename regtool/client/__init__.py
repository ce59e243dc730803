"""The registry client: probe, pull, push and the everyday commands over registry v2 (and v1).

``Client`` is an async context manager owning one ``httpx.AsyncClient`` (connections are reused across every
call made through it). It runs on asyncio (anyio's asyncio backend too, as inside ``regtool serve``), not on
trio::

    import asyncio
    from pathlib import Path
    from regtool import Client, Reference

    async def main() -> None:
        async with Client(jobs=8) as client:
            print((await client.probe("localhost:5000")).verdict)
            result = await client.pull(Reference.parse("localhost:5000/team/app:1.0"), Path("app-layout"))
            print(result.digest, result.blobs_downloaded)

    asyncio.run(main())

Errors are the classes of ``regtool.errors``: NotFoundError, AuthError, IntegrityError, TransportError,
RegistryError, UnsupportedProtocolError, UsageError; messages name the reference, digest or URL, never
credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regtool.lazy import import_on_first_use

if TYPE_CHECKING:
    from regtool.client.client import Client
    from regtool.client.results import InspectResult, ProbeResult, PullResult, PushResult

__all__ = ["Client", "InspectResult", "ProbeResult", "PullResult", "PushResult"]

# Client (and httpx under it) is imported on first use, so that the light modules of this package (tls,
# progress) can be imported without it: the CLI starts building its TLS context before that import. The results
# too: a command creates only the result classes it returns (results/).
_MODULE_OF = {
    "Client": "regtool.client.client",
    "InspectResult": "regtool.client.results",
    "ProbeResult": "regtool.client.results",
    "PullResult": "regtool.client.results",
    "PushResult": "regtool.client.results",
}


def __getattr__(name: str) -> Any:
    return import_on_first_use(__name__, name, _MODULE_OF)
