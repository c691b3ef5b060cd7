"""Group commit for this device's own posts: one fsync of the log's WAL makes durable every post
committed before it began.

A post is committed at once without an fsync (`LocalLog.author_message(durable=False)`: it
survives a kill) and noted here (`committed`); it waits for an fsync that started after its
commit (`durable`), and only then is it sent to peers, uploaded or acknowledged to the UI. A
slow fsync runs in a worker thread, so the event loop goes on receiving meanwhile, and posts
that arrive while one runs share the next. So a message the UI was told is sent survives a
power loss too, and a seq a power loss could take back was never seen by anyone (handing it out
again does no harm).

A fast fsync runs on the event loop instead, at the end of the loop turn that asked for it (the
posts of that turn share it): handing it to a thread and back cost more than the fsync itself
on a fast disk (`python -m bench.mesh`, 4 agents, alternated: 3–9% of an agent's CPU per
message, and as much more throughput).
Whether the next one is fast is judged by the last one: an fsync slower than `INLINE_UNDER`
(a busy or slow disk) sends the next to the thread again, so the loop is held up at most once
by a slow disk before it stops waiting on it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from . import trace
from .log import LocalLog

INLINE_UNDER = 0.002
"""Seconds: an fsync that took less runs the next one on the event loop."""


class GroupSync:
    """Durable commits of one `LocalLog`'s own posts, one fsync per group of waiters."""

    def __init__(self, store: LocalLog, inline_under: float = INLINE_UNDER) -> None:
        self._store = store
        self.inline_under = inline_under
        self._noted = 0  # own commits made without an fsync, counted
        self._synced = 0  # how many of them an fsync covered
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._inline = False  # the last fsync was fast: the next runs on the loop
        self._inline_due: asyncio.Handle | None = None
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
        if self._task is None and self._inline:
            if self._inline_due is None:
                self._inline_due = asyncio.get_running_loop().call_soon(self._sync_inline)
        elif self._task is None:
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
        """The fsync, in the worker thread or on the loop; it judges whether the next is fast."""
        begun = time.perf_counter()
        try:
            self._store.sync()
        finally:
            ended = time.perf_counter()
            self._inline = ended - begun < self.inline_under
        if trace.ON:
            self.last_run = (self._asked, begun, ended)

    def _sync_inline(self) -> None:
        """The fsync on the loop, at the end of the turn: it covers every post committed so
        far; their waiters go on in order."""
        self._inline_due = None
        if trace.ON:
            self._asked = time.perf_counter()
        target = self._noted
        failed: Exception | None = None
        try:
            self._sync()
        except Exception as exc:  # as from the thread: every waiter it covered hears of it
            failed = exc
        self._settle(target, failed)

    def _settle(self, target: int, exc: BaseException | None) -> None:
        """The waiters an fsync covering `target` posts ended: each told of `exc`, or done
        (in order: posts go on in the order they were committed)."""
        if exc is None:
            self._synced = max(self._synced, target)
            target = self._synced
        group = [w for n, w in self._waiting if n <= target]
        self._waiting = [(n, w) for n, w in self._waiting if n > target]
        for waiter in group:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    async def _run(self, first: tuple[int, asyncio.Future[None]]) -> None:
        running: tuple[int, asyncio.Future[None]] | None = first
        try:
            while self._waiting:
                target, fsync = running or self._begin()
                running = None
                try:
                    await fsync
                except Exception as exc:  # every waiter it covered hears of it
                    self._settle(target, exc)
                    continue
                self._settle(target, None)
        finally:
            self._task = None
            for _, waiter in self._waiting:  # cancelled: nobody syncs for them any more
                waiter.cancel()
            self._waiting = []

    async def close(self) -> None:
        """Wait for the fsync under way, if any (the log is closed after this)."""
        if self._inline_due is not None:
            self._inline_due.cancel()
            self._sync_inline()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._task)
