"""Trying the places an image can be pulled from in order: mirrors first, the primary location last.

``EndpointChain.first(what, attempt)`` runs ``attempt`` against each endpoint until one serves: a miss (404), a
failure (unreachable, 5xx once retried, bytes that do not verify, a refusal) moves on to the next endpoint, and
only the primary's error ends the pull. A mirror found unreachable is skipped for the rest of the run (a Client's
chains share what they found) instead of being asked again for every blob, and ``settle`` (the image's own
manifest) makes later lookups start at the endpoint that served it: a mirror without the manifest is not asked
for each of its blobs. Errors of this machine (UsageError: a disk, a path) and an interrupt are not a reason to
ask elsewhere and end it at once.

With more than one endpoint, each answer is reported: an ``endpoint`` progress event (``what``, ``endpoint``,
``mirror``, ``outcome`` ``served`` or ``failed`` with the ``error``) for ``--json``, and a log line for ``-v``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from regtool.client.mirrors import Endpoint
from regtool.client.progress import NullProgress, Progress
from regtool.errors import CancelledTransfer, RegtoolError, TransportError, UsageError

__all__ = ["EndpointChain"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class EndpointChain:
    """The endpoints of one image, in order, and which of them were found unreachable."""

    def __init__(
        self, endpoints: Sequence[Endpoint], progress: Progress | None = None, *, unreachable: set[str] | None = None
    ) -> None:
        if not endpoints:
            raise ValueError("an EndpointChain needs at least one endpoint")
        self.endpoints = tuple(endpoints)
        self.progress = progress or NullProgress()
        # Registries found unreachable; a Client shares one set between its chains, so a run (a sync of many
        # tags) pays for a dead mirror once.
        self._unreachable = unreachable if unreachable is not None else set()
        self._start = 0

    @property
    def primary(self) -> Endpoint:
        return self.endpoints[-1]

    @property
    def has_mirrors(self) -> bool:
        return len(self.endpoints) > 1

    async def first(self, what: str, attempt: Callable[[Endpoint], Awaitable[T]], *, settle: bool = False) -> T:
        """``attempt``'s result at the first endpoint that serves ``what``; the primary's error when none does.
        ``settle``: later lookups start at the endpoint that served this one."""
        if not self.has_mirrors:
            return await attempt(self.primary)
        failures: list[str] = []
        for index, endpoint in enumerate(self.endpoints[self._start :], start=self._start):
            last = endpoint is self.primary
            if not last and endpoint.ref.registry in self._unreachable:
                continue
            try:
                result = await attempt(endpoint)
            except RegtoolError as exc:
                if isinstance(exc, UsageError | CancelledTransfer):
                    raise
                self.failed(what, endpoint, exc)
                if last:
                    if failures:
                        # The same error (class, exit code, status) with what the mirrors said beside it.
                        exc.args = (f"{exc} (the mirrors did not serve it either: {'; '.join(failures)})",)
                    raise
                failures.append(f"{endpoint.name}: {exc}")
                continue
            self._report(what, endpoint, "served")
            if settle:
                self._start = index
            return result
        raise AssertionError("the primary endpoint is always tried")

    def failed(self, what: str, endpoint: Endpoint, error: RegtoolError) -> None:
        """Report that ``endpoint`` did not serve ``what``; an unreachable one is not asked again in this run."""
        self._report(what, endpoint, "failed", error=str(error))
        if isinstance(error, TransportError) and endpoint is not self.primary:
            self._unreachable.add(endpoint.ref.registry)

    def _report(self, what: str, endpoint: Endpoint, outcome: str, *, error: str | None = None) -> None:
        kind = "mirror" if endpoint.mirror else "primary"
        if error is None:
            logger.info("%s served by %s %s", what, kind, endpoint.name)
        else:
            logger.info("%s not served by %s %s: %s", what, kind, endpoint.name, error)
        fields: dict[str, object] = {"what": what, "endpoint": endpoint.name, "mirror": endpoint.mirror}
        if error is not None:
            fields["error"] = error
        self.progress.event("endpoint", outcome=outcome, **fields)
