"""Answers to anti-entropy pulls: what a peer's version vector says it lacks, streamed from the
room's log in bounded batches (the last says `more: false`), at most one stream per peer.

A stream waits for our own posts committed so far to be durable (a batch may hold them:
`GroupSync`), and before each batch for the data channel to have room (`RoomMesh.writable`),
so a catch-up of a long room goes at the link's pace: memory stays bounded and the link's
pings are never seconds behind it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from protocol import MAX_BATCH, VersionVector
from protocol.sync import batches_for

if TYPE_CHECKING:
    from .agent import Agent


class SyncStreams:
    """The pull answers under way from one room of the device, by peer device."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._streams: dict[str, asyncio.Task[None]] = {}

    def start(self, device: str, vector: VersionVector) -> None:
        """Stream what `device` lacks; a newer pull replaces the stream under way (its vector
        is newer, so it names at most what the older one still had to send)."""
        running = self._streams.get(device)
        if running is not None:
            running.cancel()
        self._streams[device] = self.agent.spawn(self._answer(device, vector))

    async def _answer(self, device: str, vector: VersionVector) -> None:
        try:
            sync = self.agent.device.group_sync
            if sync.unsynced:
                try:
                    await sync.durable()
                except OSError:  # a failed fsync answers nothing: the peer asks again later
                    return
            await self._stream(device, vector)
        finally:
            if self._streams.get(device) is asyncio.current_task():
                del self._streams[device]

    async def _stream(self, device: str, vector: VersionVector) -> None:
        agent = self.agent
        after: tuple[str, int] | None = None
        while True:
            if not await agent.mesh.writable(device):
                return
            batch = agent.store.missing_for(agent.room, vector, limit=MAX_BATCH, after=after)
            for frame in batches_for(batch, more_after=bool(batch)):
                if not agent.mesh.send(device, frame):
                    return
            peer = agent.roster.get(device)
            user = peer.user if peer is not None else device[:8]
            detail = {"via": "sync", "peers": [{"user": user, "device": device}],
                      "text": f"sent to {user} by anti-entropy (sync batch)"}
            for env in batch:
                agent.paths.add(env.id, "sent", detail)
            if not batch:
                return
            after = (batch[-1].device, batch[-1].seq)
