"""Group commit for this device's own posts: one fsync of the log's WAL makes durable every post
committed before it began.

A post is committed at once without an fsync (`LocalLog.author_message(durable=False)`: it
survives a kill) and noted here (`committed`); it waits for an fsync that started after its
commit (`durable`), and only then is it sent to peers, uploaded or acknowledged to the UI. The
fsync runs in a worker thread, so the event loop goes on receiving meanwhile, and posts that
arrive while one runs share the next. So a message the UI was told is sent survives a power loss
too, and a seq a power loss could take back was never seen by anyone (handing it out again does
no harm)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from . import trace
from .log import LocalLog


class GroupSync:
    """Durable commits of one `LocalLog`'s own posts, one fsync per group of waiters."""

    def __init__(self, store: LocalLog) -> None:
        self._store = store
        self._noted = 0  # own commits made without an fsync, counted
        self._synced = 0  # how many of them an fsync covered
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        # When tracing: the last fsync's times (asked for, begun in its thread, ended).
        self.last_run = (0.0, 0.0, 0.0)
        self._asked = 0.0

    def committed(self) -> None:
        """An own post was just committed without an fsync."""
        self._noted += 1

    @property
    def unsynced(self) -> bool:
        """Whether an own post committed so far still waits for its fsync."""
        return self._synced < self._noted

    def durable(self) -> asyncio.Future[None]:
        """A future done once every own post committed before this call survives a power loss
        (done already if none waits); it raises what the fsync raised (OSError)."""
        waiter = asyncio.get_running_loop().create_future()
        if not self.unsynced:
            waiter.set_result(None)
            return waiter
        self._waiting.append((self._noted, waiter))
        if self._task is None:
            # The fsync is handed to its thread now, not from the task's first step: a lone
            # post waits for nothing but its fsync.
            self._task = asyncio.ensure_future(self._run(self._begin()))
        return waiter

    def _begin(self) -> tuple[int, asyncio.Future[None]]:
        """Start an fsync in a worker thread: it covers the own posts committed so far."""
        if trace.ON:
            self._asked = time.perf_counter()
        return self._noted, asyncio.get_running_loop().run_in_executor(None, self._sync)

    def _sync(self) -> None:
        """The fsync, in the worker thread."""
        begun = time.perf_counter() if trace.ON else 0.0
        self._store.sync()
        if trace.ON:
            self.last_run = (self._asked, begun, time.perf_counter())

    async def _run(self, first: tuple[int, asyncio.Future[None]]) -> None:
        running: tuple[int, asyncio.Future[None]] | None = first
        try:
            while self._waiting:
                target, fsync = running or self._begin()
                running = None
                try:
                    await fsync
                except Exception as exc:  # every waiter it covered hears of it
                    group = [w for n, w in self._waiting if n <= target]
                    self._waiting = [(n, w) for n, w in self._waiting if n > target]
                    for waiter in group:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                self._synced = max(self._synced, target)
                # In order: posts go on (are sent) in the order they were committed.
                done = [w for n, w in self._waiting if n <= self._synced]
                self._waiting = [(n, w) for n, w in self._waiting if n > self._synced]
                for waiter in done:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._task = None
            for _, waiter in self._waiting:  # cancelled: nobody syncs for them any more
                waiter.cancel()
            self._waiting = []

    async def close(self) -> None:
        """Wait for the fsync under way, if any (the log is closed after this)."""
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._task)
