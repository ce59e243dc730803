"""Blocking calls run in worker threads, awaited from asyncio: the client's one thread hand-off.

The client runs on asyncio alone (the standard library's, nothing on top), and this module gives it what it
needs from threads, with these guarantees:

- ``await in_thread(func, *args)`` runs ``func(*args)`` in a worker thread (in a copy of the caller's context
  variables) and returns what it returned, or raises what it raised.
- The caller does not leave while its thread still runs. Cancelled meanwhile, it waits for the thread to finish
  and then raises the cancellation: a cancelled transfer never returns a connection to the pool, or closes a
  file, that a thread is still using. A call cancelled before its thread started never starts it.
  ``abandon_on_cancel=True`` is for calls whose owner cleans up after the thread itself (a pooled exchange
  closes its connection when its thread is done): the caller leaves at once and the thread runs on.
  ``on_cancel`` is how a long call is told to stop early: it is called on the event loop when the caller is
  cancelled while the thread runs, before the caller waits for it (typically it sets an event the call checks).
- At most ``DEFAULT_THREADS`` calls run at once per event loop, unless a call is given its own ``limiter`` (an
  ``asyncio.Semaphore``): then that limiter alone bounds it. Threads are made as calls need them (never a queue
  behind a fixed pool, which explicit limiters could starve) and end after ``_IDLE`` seconds without work.
- Worker threads are daemons: a command interrupted while a thread waits on a socket still exits at once (the
  calls that waited have their threads done; only abandoned ones may remain).

``await shielded(awaitable)`` runs a cleanup to its end whatever cancellation arrives meanwhile (asyncio's
``Task.cancel``, ``asyncio.timeout``, or an anyio cancel scope that cancels again on every await, as when the
pull-through cache runs the client inside the server), then re-raises that cancellation.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["DEFAULT_THREADS", "in_thread", "shielded"]

T = TypeVar("T")
V = TypeVar("V")

# As many calls at once, without a limiter of their own, as anyio allowed the client before.
DEFAULT_THREADS = 40
# A worker thread without work for this long ends (a long-lived process does not keep a burst's threads).
_IDLE = 10.0

_default_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def in_thread(
    func: Callable[..., T],
    *args: object,
    limiter: asyncio.Semaphore | None = None,
    abandon_on_cancel: bool = False,
    on_cancel: Callable[[], object] | None = None,
) -> T:
    """``func(*args)`` in a worker thread (see the module's guarantees)."""
    loop = asyncio.get_running_loop()
    if limiter is None:
        limiter = _default_limiters.get(loop)
        if limiter is None:
            limiter = _default_limiters[loop] = asyncio.Semaphore(DEFAULT_THREADS)
    async with limiter:
        call = _Call(loop, functools.partial(contextvars.copy_context().run, func, *args))
        try:
            _workers.submit(call.run)
        except BaseException:  # no thread could be started: the queued call must not run later, unawaited
            call.claim_before_start()
            raise
        try:
            return await asyncio.shield(call.future)
        except asyncio.CancelledError as cancelled:
            # Withdrawn before its thread took it: it never runs, in either mode (an abandoned request must not
            # be sent after its caller has left).
            if not call.claim_before_start():
                raise
            if on_cancel is not None:
                on_cancel()
            if abandon_on_cancel:
                # No one awaits it any more: its thread's error is dropped when it comes (asyncio would log a
                # future whose error was never retrieved).
                call.future.add_done_callback(_drop_outcome)
                raise
            await _until_done(call.future)
            call.future.exception()  # its thread's error, if any, is dropped: the cancellation goes first
            raise cancelled from None


def _drop_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def shielded(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to its end; a cancellation arriving meanwhile is raised after it (its result or error
    is then dropped: the cancellation is what the caller must see)."""
    task = asyncio.ensure_future(awaitable)
    cancelled = await _until_done(task)
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not log it as never retrieved
        raise cancelled
    return task.result()


async def _until_done(future: asyncio.Future[T]) -> asyncio.CancelledError | None:
    """Wait for ``future`` through any number of cancellations; the first of them (None if none came)."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait((future,))  # cancelling the wait leaves the future alone
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    return cancelled


class _Call(Generic[T]):
    """One call's result, handed from its thread to the event loop; a call not started yet can be withdrawn."""

    __slots__ = ("_func", "_lock", "_loop", "_state", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, func: Callable[[], T]) -> None:
        self._loop = loop
        self._func = func
        self._lock = threading.Lock()
        self._state = "queued"  # then "running" or "withdrawn"
        self.future: asyncio.Future[T] = loop.create_future()

    def claim_before_start(self) -> bool:
        """Whether the thread is running or has run (False: it never will, the call is withdrawn)."""
        with self._lock:
            if self._state == "queued":
                self._state = "withdrawn"
                return False
            return True

    def run(self) -> None:
        with self._lock:
            if self._state == "withdrawn":
                return
            self._state = "running"
        try:
            result = self._func()
        except StopIteration as exc:  # a future cannot hold one (it would end the awaiting coroutine instead)
            self._hand_over(self.future.set_exception, RuntimeError(f"{exc!r} raised in a worker thread"))
        except BaseException as exc:  # handed to the awaiting task, which raises it
            self._hand_over(self.future.set_exception, exc)
        else:
            self._hand_over(self.future.set_result, result)

    def _hand_over(self, settle: Callable[[V], object], value: V) -> None:
        def once() -> None:
            if not self.future.done():
                settle(value)

        try:
            self._loop.call_soon_threadsafe(once)
        except RuntimeError:  # the loop is closed: no one awaits this call any more
            pass


class _Workers:
    """Daemon threads taking jobs from one queue; a new thread whenever no idle one is left to take a job.

    ``_idle`` counts the threads waiting for a job minus the jobs queued for them, so a job submitted when it is
    zero gets a thread of its own: a job never waits behind others."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._jobs.put(job)
            if self._idle > 0:
                self._idle -= 1
                return
        threading.Thread(target=self._work, name="regtool worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():  # no job was queued for this thread meanwhile: it may end
                        self._idle -= 1
                        return
                continue
            job()
            del job
            with self._lock:
                self._idle += 1


_workers = _Workers()
