"""Uploads of the local log to the server: every message the server lacks, retried until it
is acknowledged, across restarts and reconnects (the outbox lives in the local SQLite log).

Our own messages go at once. Another device's wait OTHERS_GRACE first: its author uploads it
too, and the server's `stored` notice then takes it out of our outbox, so that a busy room does
not upload every message once per member. Nothing is lost by the wait: a message the server
still lacks after it (its author crashed, or cannot reach the server) goes up from here.
Another device's message therefore wakes the outbox only once its grace is over (one timer for
all that arrive meanwhile), not on arrival: a busy room would otherwise cost a read of the
outbox per message received, for a batch still too young to send."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from protocol import MAX_BATCH

from .log import LocalLog
from .room_signaling import RoomSignaling
from .tasks import cancel_and_wait

log = logging.getLogger("gibberish.agent.outbox")

# Refusals that a retry cannot fix: the message is dropped from the outbox (and logged).
PERMANENT = {"invalid_envelope", "bad_signature", "unknown_author", "conflict"}
# How long another device's message waits in our outbox before we upload it ourselves.
OTHERS_GRACE = 1.5


class Outbox:
    """Drains the log's outbox through `publish` whenever the server link is up."""

    def __init__(self, store: LocalLog, client: RoomSignaling, room: str, *,
                 on_uploaded: Callable[[dict[str, int]], None], retry_interval: float = 2.0,
                 durable: Callable[[], Awaitable[None]] | None = None) -> None:
        self._store = store
        # Waits until our own posts committed so far are durable (peer_agent.group_sync):
        # none is uploaded before.
        self._durable = durable
        self._client = client
        self._room = room
        self._on_uploaded = on_uploaded
        self._retry_interval = retry_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._after_grace: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    def wake(self) -> None:
        """Something was added, or the server came back: try now rather than at the next tick."""
        self._wake.set()

    def wake_after_grace(self) -> None:
        """Another device's message was added: try once OTHERS_GRACE has passed for it (one
        timer covers every message added before it fires)."""
        if self._after_grace is None:
            self._after_grace = asyncio.get_running_loop().call_later(
                OTHERS_GRACE + 0.05, self._grace_over)

    def _grace_over(self) -> None:
        self._after_grace = None
        self._wake.set()

    def pending(self) -> int:
        return self._store.outbox_count(self._room)

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._retry_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.flush_once():
                    pass
            except Exception:
                log.exception("upload round failed; retrying later")

    async def flush_once(self) -> bool:
        """Upload one batch; True if it made progress and more may be waiting."""
        if not self._client.joined:
            return False
        settled = int((time.time() - OTHERS_GRACE) * 1000)
        batch = await asyncio.to_thread(self._store.outbox_pending, self._room, MAX_BATCH,
                                        settled)
        if not batch:
            return False
        if self._durable is not None:
            await self._durable()
        results = await self._client.publish(batch)
        if results is None:
            return False
        stored: dict[str, int] = {}
        dropped: list[str] = []
        for env, result in zip(batch, results, strict=True):
            if result.get("ok"):
                stored[env.id] = int(result["cursor"])
            elif result.get("error", {}).get("code") in PERMANENT:
                log.warning("server refused %s for good: %s", env.id, result.get("error"))
                dropped.append(env.id)
            else:
                log.info("server refused %s for now: %s", env.id, result.get("error"))
        if stored:
            await asyncio.to_thread(self._store.mark_uploaded, self._room, stored)
            self._on_uploaded(stored)
        if dropped:
            await asyncio.to_thread(self._store.drop_from_outbox, self._room, dropped)
        return bool(stored or dropped)

    async def close(self) -> None:
        if self._after_grace is not None:
            self._after_grace.cancel()
            self._after_grace = None
        await cancel_and_wait(self._task)
