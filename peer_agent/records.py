"""What the agent saw happen, for the network view (docs/network-view.md): a timeline of the
room's events, kept in memory, and each message's path, kept in the local log.

Path steps are recorded where they happen (a receipt, an upload, a frame on a channel) and
written to SQLite in batches, at most `flush_interval` seconds late, from a worker thread: one
transaction per batch rather than one per step, and none on the event loop, keeps them off the
message path. A crash loses at most the last batch of steps, never a message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .log import SERVER_STEPS, LocalLog, PathStep
from .tasks import cancel_and_wait

log = logging.getLogger("gibberish.agent.records")

TIMELINE_SIZE = 500
NOTE_MAX_CHARS = 500
FLUSH_BATCH = 500


def now_ms() -> int:
    return int(time.time() * 1000)


class Timeline:
    """The last `size` events, oldest first; `on_event` sees each one as it is added."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None],
                 size: int = TIMELINE_SIZE) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0
        self._on_event = on_event

    def add(self, kind: str, text: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        event = {"seq": self._seq, "at": now_ms(), "kind": kind, "text": text, **fields}
        self._events.append(event)
        self._on_event(event)
        return event

    def recent(self, limit: int = TIMELINE_SIZE) -> list[dict[str, Any]]:
        events = list(self._events)
        return events[-limit:] if limit > 0 else []


class PathJournal:
    """Steps of messages' paths, buffered and written to the log in batches.

    Once started, a task of its own writes each batch from a worker thread, so recording a
    step costs the message path a list append and no SQLite work on the event loop. Steps
    handed to the thread and not yet committed still show in `steps`."""

    def __init__(self, store: LocalLog, room: str, flush_interval: float = 0.5) -> None:
        self._store = store
        self._room = room
        self._pending: list[PathStep] = []
        self._writing: list[PathStep] = []  # the batch being written by the worker thread
        self._flush_interval = flush_interval
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[None] | None = None

    def record(self, message_id: str, what: str, at: int | None = None,
               **detail: Any) -> None:
        self.add(message_id, what, detail, at)

    def add(self, message_id: str, what: str, detail: Mapping[str, Any],
            at: int | None = None) -> None:
        """`record` with the detail given as it is, not copied: the steps of a batch may share
        one (it is encoded once when written); nobody changes it afterwards."""
        shared = detail if isinstance(detail, dict) else dict(detail)
        self._pending.append(PathStep(message_id, now_ms() if at is None else at, what, shared))
        if self._task is None:
            if len(self._pending) >= FLUSH_BATCH:
                self.flush()
            return
        self._wake.set()
        if len(self._pending) >= FLUSH_BATCH:
            self._full.set()

    def steps(self, message_id: str) -> list[dict[str, Any]]:
        """The steps of one message, written and pending, in time order."""
        steps = self._store.path(self._room, message_id)
        # A batch just committed may not have left `_writing` yet: count its steps once.
        steps += [s for s in self._writing if s.id == message_id and s not in steps]
        steps += [s for s in self._pending if s.id == message_id]
        steps.sort(key=lambda s: s.at)
        # One server step per message, as the log keeps: this device's upload if any.
        server = [s for s in steps if s.what in SERVER_STEPS]
        server.sort(key=lambda s: s.what != "uploaded")
        return [{"at": s.at, "what": s.what, **s.detail} for s in steps
                if s.what not in SERVER_STEPS or s is server[0]]

    def flush(self) -> None:
        """Write the pending steps now, on the caller's thread."""
        pending, self._pending = self._pending, []
        if pending:
            self._store.add_path_steps(self._room, pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="path-journal")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval):
                        await self._full.wait()
            self._wake.clear()
            self._full.clear()
            self._writing, self._pending = self._pending, []
            self._inflight = asyncio.ensure_future(
                asyncio.to_thread(self._store.add_path_steps, self._room, self._writing))
            self._inflight.add_done_callback(self._written)
            # Shielded: a close() while the thread writes waits for it rather than closing
            # the log under it. A failed batch is logged by `_written`, and the next one tried.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._inflight)

    def _written(self, done: asyncio.Future[None]) -> None:
        self._writing = []
        if not done.cancelled() and done.exception() is not None:
            log.error("could not write message paths; they are dropped",
                      exc_info=done.exception())

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        if self._inflight is not None and not self._inflight.done():
            await asyncio.wait([self._inflight])
        self.flush()
