"""Bounded concurrency for the client: run coroutines in an asyncio task group, at most ``limit`` at a time.

Task groups raise an ExceptionGroup; callers of the client want the one error that stopped the work
(a regtool error, with its exit code), so ``run_bounded`` re-raises the first non-cancellation error alone.

Blob transfers are bounded by weight, not count (``transfer_weight``, ``WeightedLimiter``): ``jobs`` large blobs
move at once, as before, but a small blob costs a quarter of a large one. A small blob's time is mostly round
trips, not bytes, so on a far registry running four times as many of them at once saves whole waves of round
trips, while the bandwidth and CPU that ``jobs`` guards are not what they use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

__all__ = [
    "LARGE_WEIGHT",
    "PRECONNECT_PER_JOB",
    "SMALL_BLOB",
    "WeightedLimiter",
    "both",
    "first_error",
    "gather",
    "run_bounded",
    "task_group",
    "transfer_weight",
]

T = TypeVar("T")
U = TypeVar("U")

# A blob of at most SMALL_BLOB bytes weighs 1, a larger one LARGE_WEIGHT; capacities are jobs * LARGE_WEIGHT.
SMALL_BLOB = 2 << 20
LARGE_WEIGHT = 4
# Connections opened ahead of a transfer's first blobs, per job: one for each blob of a full wave of small ones
# (their weight lets LARGE_WEIGHT of them share a job), so that wave pays no handshake.
PRECONNECT_PER_JOB = LARGE_WEIGHT


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """``asyncio.TaskGroup``, leaving the current task's cancellation count as it found it.

    On Python 3.11 (and 3.12 before 3.12.3) a group whose child fails while the body has already finished
    cancels the enclosing task and never counts that back (``uncancel``). A task that then handles the error and
    goes on carries a cancellation it never received: a later Ctrl-C reaches ``asyncio.run`` as a bare
    CancelledError (a traceback, exit 1, instead of exit 130), and a caller's ``asyncio.timeout`` misreads its
    own expiry. The cancellations that arrived during the group have been delivered by the time it exits (the
    group raises them), so what is counted beyond the entry's count is dropped."""
    task = asyncio.current_task()
    entered = task.cancelling() if task is not None else 0
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    finally:
        while task is not None and task.cancelling() > entered:
            task.uncancel()


def transfer_weight(size: int | None) -> int:
    """How much of a transfer capacity moving ``size`` bytes takes (unknown sizes count as large)."""
    return 1 if size is not None and size <= SMALL_BLOB else LARGE_WEIGHT


class WeightedLimiter:
    """At most ``capacity`` units held at once; each holder takes a weight (clamped to the capacity).

    A release hands the freed room to the waiters it now fits, in arrival order, and wakes only those: waking
    every waiter to re-check (a condition's notify_all) costs a scheduler pass per waiter per release, which
    grows with the square of the waiters. A small weight still passes a large one that does not fit yet."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._used = 0
        self._waiting: list[_Waiter] = []

    @contextlib.asynccontextmanager
    async def hold(self, weight: int) -> AsyncIterator[None]:
        weight = min(max(1, weight), self.capacity)
        await self._acquire(weight)
        try:
            yield
        finally:
            self._release(weight)

    async def _acquire(self, weight: int) -> None:
        if self._used + weight <= self.capacity:
            self._used += weight
            return
        waiter = _Waiter(weight)
        self._waiting.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():  # granted as it was cancelled: the room goes to the others
                self._release(weight)
            else:
                self._waiting.remove(waiter)
            raise

    def _release(self, weight: int) -> None:
        self._used -= weight
        waiting: list[_Waiter] = []
        for waiter in self._waiting:
            if self._used + waiter.weight <= self.capacity:
                self._used += waiter.weight
                waiter.granted.set()
            else:
                waiting.append(waiter)
        self._waiting = waiting


class _Waiter:
    __slots__ = ("granted", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.granted = asyncio.Event()


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
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
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
    try:
        async with task_group() as tg:
            if size_of is None:
                # ``limit`` workers taking the items in turn: no task, and no wait for a slot, per item.
                pending = list(items)
                queue = iter(pending)

                async def worker() -> None:
                    for item in queue:
                        await func(item)

                for _ in range(min(max(1, limit), len(pending))):
                    tg.create_task(worker())
            else:
                limiter = WeightedLimiter(limit * LARGE_WEIGHT)
                weigh = size_of

                async def one(item: T) -> None:
                    async with limiter.hold(transfer_weight(weigh(item))):
                        await func(item)

                for item in items:
                    tg.create_task(one(item))
    except BaseExceptionGroup as group:
        raise first_error(group) from None


async def gather(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await ``calls`` concurrently; their results in order (the first error is raised alone)."""
    results: list[Any] = [None] * len(calls)

    async def one(index: int) -> None:
        results[index] = await calls[index]

    await run_bounded(range(len(calls)), one, max(1, len(calls)))
    return results


async def both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """``gather`` of two calls of different types, typed."""
    one, two = await gather([first, second])
    return cast("T", one), cast("U", two)
