"""Bounded concurrency for the client: run coroutines in an anyio task group, at most ``limit`` at a time.

anyio task groups raise an ExceptionGroup; callers of the client want the one error that stopped the work
(a regtool error, with its exit code), so ``run_bounded`` re-raises the first non-cancellation error alone.

Blob transfers are bounded by weight, not count (``transfer_weight``, ``WeightedLimiter``): ``jobs`` large blobs
move at once, as before, but a small blob costs a quarter of a large one. A small blob's time is mostly round
trips, not bytes, so on a far registry running four times as many of them at once saves whole waves of round
trips, while the bandwidth and CPU that ``jobs`` guards are not what they use.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

import anyio

__all__ = [
    "LARGE_WEIGHT",
    "PRECONNECT_PER_JOB",
    "SMALL_BLOB",
    "WeightedLimiter",
    "first_error",
    "run_bounded",
    "transfer_weight",
]

T = TypeVar("T")

# A blob of at most SMALL_BLOB bytes weighs 1, a larger one LARGE_WEIGHT; capacities are jobs * LARGE_WEIGHT.
SMALL_BLOB = 2 << 20
LARGE_WEIGHT = 4
# Connections opened ahead of a transfer's first blobs, per job: one for each blob of a full wave of small ones
# (their weight lets LARGE_WEIGHT of them share a job), so that wave pays no handshake.
PRECONNECT_PER_JOB = LARGE_WEIGHT


def transfer_weight(size: int | None) -> int:
    """How much of a transfer capacity moving ``size`` bytes takes (unknown sizes count as large)."""
    return 1 if size is not None and size <= SMALL_BLOB else LARGE_WEIGHT


class WeightedLimiter:
    """At most ``capacity`` units held at once; each holder takes a weight (clamped to the capacity)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._used = 0
        self._condition = anyio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, weight: int) -> AsyncIterator[None]:
        weight = min(max(1, weight), self.capacity)
        async with self._condition:
            while self._used + weight > self.capacity:
                await self._condition.wait()
            self._used += weight
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._condition:
                    self._used -= weight
                    self._condition.notify_all()


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception of ``group`` that is not a cancellation (else the first leaf)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in leaves:
        if not isinstance(leaf, cancelled):
            return leaf
    return leaves[0]


async def run_bounded(
    items: Iterable[T],
    func: Callable[[T], Awaitable[object]],
    limit: int,
    *,
    size_of: Callable[[T], int | None] | None = None,
) -> None:
    """``await func(item)`` for every item concurrently, at most ``limit`` at once; the first error wins.

    With ``size_of`` the items are blob transfers, bounded by weight: ``limit`` large ones, or four small ones in
    the place of each large one.
    """
    capacity = limit * LARGE_WEIGHT if size_of is not None else limit
    limiter = WeightedLimiter(capacity)

    async def one(item: T) -> None:
        weight = transfer_weight(size_of(item)) if size_of is not None else 1
        async with limiter.hold(weight):
            await func(item)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item)
    except BaseExceptionGroup as group:
        raise first_error(group) from None
