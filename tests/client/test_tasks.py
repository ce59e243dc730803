"""run_bounded, gather/both and WeightedLimiter: the bounds hold, room freed goes to the waiters that fit, errors
come out alone."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from regtool.client.tasks import LARGE_WEIGHT, SMALL_BLOB, WeightedLimiter, both, run_bounded
from regtool.errors import NotFoundError

pytestmark = pytest.mark.anyio


class Gauge:
    """How many holders are in at once, and the most there ever were."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def enter(self, amount: int = 1) -> None:
        self.now += amount
        self.most = max(self.most, self.now)

    def leave(self, amount: int = 1) -> None:
        self.now -= amount


@pytest.mark.parametrize("limit", [1, 3, 32])
async def test_run_bounded_runs_every_item_at_most_limit_at_once(limit: int) -> None:
    gauge = Gauge()
    done: list[int] = []

    async def work(item: int) -> None:
        gauge.enter()
        await anyio.sleep(0.001 * (item % 3))
        done.append(item)
        gauge.leave()

    await run_bounded(range(50), work, limit)
    assert sorted(done) == list(range(50))
    assert gauge.most == min(limit, 50)


async def test_run_bounded_with_no_items_returns() -> None:
    async def work(item: int) -> None:
        raise AssertionError("no item to work on")

    await run_bounded([], work, 8)


async def test_run_bounded_raises_the_first_error_alone_and_stops_the_rest() -> None:
    started: list[int] = []

    async def work(item: int) -> None:
        started.append(item)
        if item == 2:
            raise NotFoundError("item 2 is gone")
        await anyio.sleep(10)

    with anyio.fail_after(5), pytest.raises(NotFoundError, match="item 2 is gone"):
        await run_bounded(range(100), work, 4)
    # The workers stopped at the error: the items after the first few never started.
    assert len(started) < 100


async def test_run_bounded_by_weight_counts_small_blobs_as_a_quarter() -> None:
    gauge = Gauge()
    sizes = [SMALL_BLOB + 1] * 4 + [1024] * 16

    async def work(size: int) -> None:
        gauge.enter(LARGE_WEIGHT if size > SMALL_BLOB else 1)
        await anyio.sleep(0.002)
        gauge.leave(LARGE_WEIGHT if size > SMALL_BLOB else 1)

    await run_bounded(sizes, work, 2, size_of=lambda size: size)
    assert gauge.most == 2 * LARGE_WEIGHT


async def test_weighted_limiter_never_exceeds_its_capacity_and_serves_everyone() -> None:
    limiter = WeightedLimiter(8)
    gauge = Gauge()
    served: list[int] = []

    async def holder(index: int, weight: int) -> None:
        async with limiter.hold(weight):
            gauge.enter(weight)
            assert gauge.now <= 8
            await anyio.sleep(0.001)
            gauge.leave(weight)
        served.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(60):
            tg.start_soon(holder, index, (1, 4, 2, 8)[index % 4])
    assert sorted(served) == list(range(60))
    assert gauge.most == 8


async def test_weighted_limiter_lets_a_small_holder_past_a_large_one_that_does_not_fit() -> None:
    limiter = WeightedLimiter(4)
    order: list[str] = []
    release_first = anyio.Event()

    async def hold(name: str, weight: int, until: anyio.Event | None = None) -> None:
        async with limiter.hold(weight):
            order.append(name)
            if until is not None:
                await until.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "first (3)", 3, release_first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(hold, "large (4)", 4)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(hold, "small (1)", 1)
        await anyio.wait_all_tasks_blocked()
        assert order == ["first (3)", "small (1)"]
        release_first.set()
    assert order == ["first (3)", "small (1)", "large (4)"]


async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    limiter = WeightedLimiter(1)
    release = anyio.Event()
    got: list[str] = []

    async def hold(name: str, until: anyio.Event | None = None) -> None:
        async with limiter.hold(1):
            got.append(name)
            if until is not None:
                await until.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "holder", release)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await hold("cancelled")
        tg.start_soon(hold, "next")
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert got == ["holder", "next"]
    # Nothing is held any more: the whole capacity is free again.
    with anyio.fail_after(1):
        async with limiter.hold(1):
            pass


async def test_room_granted_to_a_waiter_cancelled_before_it_ran_is_given_back() -> None:
    limiter = WeightedLimiter(1)
    outcome: list[str] = []
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            async with limiter.hold(1):
                outcome.append("held")
        if scope.cancel_called:
            outcome.append("cancelled")

    async with anyio.create_task_group() as tg:
        async with limiter.hold(1):
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
        # The release above granted the room to the waiter; it is cancelled before it could run (anyio may let
        # it hold the room first, its wake-up being due already): either way the room comes back.
        scope.cancel()
    assert outcome[-1] == "cancelled"
    assert limiter._used == 0 and not limiter._waiting
    with anyio.fail_after(1):
        async with limiter.hold(1):
            pass


async def test_both_awaits_the_two_at_once_and_returns_both_results() -> None:
    second_started = anyio.Event()

    async def first() -> int:
        # Returns only once the second has started: awaited one after the other, this would wait forever.
        await second_started.wait()
        return 1

    async def second() -> str:
        second_started.set()
        return "two"

    with anyio.fail_after(5):
        assert await both(first(), second()) == (1, "two")


async def test_both_raises_the_first_error_alone_and_cancels_the_other() -> None:
    cancelled = False

    async def slow() -> int:
        nonlocal cancelled
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise
        return 1

    async def failing() -> int:
        raise NotFoundError("registry b is gone")

    with anyio.fail_after(5), pytest.raises(NotFoundError, match="registry b is gone"):
        await both(slow(), failing())
    assert cancelled


async def test_a_group_whose_child_failed_leaves_no_cancellation_counted_on_the_caller() -> None:
    # Python 3.11's TaskGroup cancels the waiting caller when a child fails and never counts it back; a caller
    # that handles the error and goes on would read a later Ctrl-C or timeout wrongly.
    async def fail(_: int) -> None:
        await asyncio.sleep(0.01)
        raise NotFoundError("gone")

    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    with pytest.raises(NotFoundError):
        await run_bounded([1], fail, 1)
    assert task.cancelling() == before
    async with asyncio.timeout(5):  # and the task still awaits normally
        await asyncio.sleep(0)
