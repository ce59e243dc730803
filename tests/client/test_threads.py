"""The client's thread hand-off and shielded cleanups: a cancelled caller waits for its thread, a call that never
started never runs, the thread bounds hold, and a cleanup runs to its end through repeated cancellations."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
from collections.abc import Callable

import anyio
import pytest

from regtool.client import threads
from regtool.client.threads import DEFAULT_THREADS, in_thread, shielded
from regtool.errors import NotFoundError

pytestmark = pytest.mark.anyio

_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


async def test_a_call_returns_its_result_and_raises_its_error() -> None:
    assert await in_thread(pow, 2, 10) == 1024

    def missing() -> None:
        raise NotFoundError("blob gone")

    with pytest.raises(NotFoundError, match="blob gone"):
        await in_thread(missing)


async def test_a_call_runs_in_another_thread_with_the_callers_context() -> None:
    _CALLER.set("the task")
    name, caller = await in_thread(lambda: (threading.current_thread().name, _CALLER.get()))
    assert name != threading.current_thread().name
    assert caller == "the task"


async def test_a_cancelled_caller_waits_for_its_thread_then_raises_the_cancellation() -> None:
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def work() -> None:
        started.set()
        release.wait(5)
        time.sleep(0.05)
        events.append("thread done")

    async def caller() -> None:
        try:
            await in_thread(work)
        except asyncio.CancelledError:
            events.append("caller cancelled")
            raise

    task = asyncio.ensure_future(caller())
    await in_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the thread, though cancelled
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["thread done", "caller cancelled"]


async def test_on_cancel_tells_a_running_call_to_stop_before_the_caller_waits_for_it() -> None:
    started, stop = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        return "stopped" if stop.wait(10) else "ran to its end"

    outcome: list[str] = []
    task = asyncio.ensure_future(in_thread(lambda: outcome.append(work()), on_cancel=stop.set))
    await in_thread(started.wait, 5)
    asked = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - asked < 5
    assert outcome == ["stopped"]


async def test_abandon_on_cancel_leaves_at_once_and_the_thread_runs_on() -> None:
    started, release = threading.Event(), threading.Event()
    finished = threading.Event()

    def work() -> None:
        started.set()
        release.wait(5)
        finished.set()

    task = asyncio.ensure_future(in_thread(work, abandon_on_cancel=True))
    await in_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not finished.is_set()
    release.set()
    assert await in_thread(finished.wait, 5)


async def test_an_abandoned_calls_later_error_is_not_reported_as_never_retrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        started, release = threading.Event(), threading.Event()

        def fails_later() -> None:
            started.set()
            release.wait(5)
            raise NotFoundError("the connection went away")

        task = asyncio.ensure_future(in_thread(fails_later, abandon_on_cancel=True))
        await in_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.sleep(0.2)  # the thread raised and handed its error over
        del task
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_a_call_cancelled_before_its_thread_started_never_runs() -> None:
    limiter = asyncio.Semaphore(1)
    release = threading.Event()
    ran: list[str] = []
    holder = asyncio.ensure_future(in_thread(release.wait, 5, limiter=limiter))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(in_thread(ran.append, "never", limiter=limiter))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    assert await holder is True
    await asyncio.sleep(0.05)
    assert ran == []


@pytest.mark.parametrize("abandon", [False, True])
async def test_a_call_cancelled_while_queued_for_its_thread_never_runs(
    abandon: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy machine: the job waits in the queue until a thread takes it, after its caller was cancelled.
    queued: list[Callable[[], None]] = []
    monkeypatch.setattr(threads._workers, "submit", queued.append)
    ran: list[str] = []
    call = asyncio.ensure_future(in_thread(ran.append, "never", abandon_on_cancel=abandon))
    await asyncio.sleep(0.01)
    assert len(queued) == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    queued[0]()  # a thread takes the job only now
    assert ran == []


async def test_stop_iteration_in_the_thread_is_a_runtime_error_not_a_call_that_never_ends() -> None:
    with pytest.raises(RuntimeError, match="StopIteration"):
        async with asyncio.timeout(5):
            await in_thread(next, iter(()), abandon_on_cancel=True)


class _Gauge:
    """Threads inside at once (and the most seen), all held until ``release``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.release = threading.Event()

    def hold(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        self.release.wait(5)
        with self.lock:
            self.now -= 1


async def _run_many(count: int, limiter: asyncio.Semaphore | None) -> int:
    gauge = _Gauge()
    tasks = [asyncio.ensure_future(in_thread(gauge.hold, limiter=limiter)) for _ in range(count)]
    expected = min(count, DEFAULT_THREADS) if limiter is None else count
    deadline = time.monotonic() + 5
    while gauge.most < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # any call past the bound would have started by now
    gauge.release.set()
    await asyncio.gather(*tasks)
    return gauge.most


async def test_calls_without_a_limiter_run_at_most_the_default_number_at_once() -> None:
    assert await _run_many(DEFAULT_THREADS + 10, None) == DEFAULT_THREADS


async def test_a_limiter_of_its_own_is_the_only_bound_of_a_call() -> None:
    count = DEFAULT_THREADS + 20
    assert await _run_many(count, asyncio.Semaphore(count)) == count


async def test_worker_threads_are_daemons() -> None:
    assert await in_thread(lambda: threading.current_thread().daemon) is True


async def _cleanup(steps: list[str]) -> str:
    for step in range(5):
        await asyncio.sleep(0.01)
        steps.append(f"step {step}")
    return "cleaned"


async def test_shielded_returns_the_result_when_nothing_cancels() -> None:
    steps: list[str] = []
    assert await shielded(_cleanup(steps)) == "cleaned"
    assert len(steps) == 5


async def test_a_shielded_cleanup_runs_to_its_end_under_a_timeout_which_then_expires() -> None:
    steps: list[str] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.015):
            await shielded(_cleanup(steps))
    assert steps == [f"step {step}" for step in range(5)]


async def test_a_shielded_cleanup_runs_to_its_end_in_an_anyio_scope_that_cancels_on_every_await() -> None:
    # The pull-through cache runs the client inside the server, under anyio's cancel scopes.
    steps: list[str] = []
    after: list[str] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await shielded(_cleanup(steps))
        after.append("not reached")
    assert steps == [f"step {step}" for step in range(5)]
    assert after == []
    assert scope.cancelled_caught


async def test_a_cancelled_shielded_cleanup_raises_the_cancellation_not_its_own_error() -> None:
    async def failing() -> None:
        await asyncio.sleep(0.02)
        raise NotFoundError("cleanup failed")

    task = asyncio.ensure_future(shielded(failing()))
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_call_whose_thread_cannot_start_raises_and_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_workers", threads._Workers())  # no idle thread to take the call
    real_start = threading.Thread.start

    def no_thread(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    ran: list[str] = []
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        await in_thread(ran.append, "the call that failed to start")
    monkeypatch.setattr(threading.Thread, "start", real_start)
    await in_thread(ran.append, "a later call")  # its thread takes whatever was queued first
    await asyncio.sleep(0.05)
    assert ran == ["a later call"]
