"""Bounded concurrency for the client: run coroutines in an anyio task group, at most ``limit`` at a time.

anyio task groups raise an ExceptionGroup; callers of the client want the one error that stopped the work
(a regtool error, with its exit code), so ``run_bounded`` re-raises the first non-cancellation error alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import anyio

__all__ = ["first_error", "run_bounded"]

T = TypeVar("T")


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


async def run_bounded(items: Iterable[T], func: Callable[[T], Awaitable[object]], limit: int) -> None:
    """``await func(item)`` for every item concurrently, at most ``limit`` at once; the first error wins."""
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def one(item: T) -> None:
        async with limiter:
            await func(item)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item)
    except BaseExceptionGroup as group:
        raise first_error(group) from None
