"""Sync batches from peers checked off the event loop: a batch's signatures go to worker
threads (`protocol.verify_envelopes`, libsodium releasing the GIL) while the loop goes on
receiving and storing, so a catching-up device uses every core.

Frames from one peer are still decided in the order they came: a frame behind a batch still
being checked waits for it. A batch's other checks (`RoomCore.to_check`: held already, the
device's key) are made when it arrives if only batches wait ahead of it (they change no key),
else when the frames ahead of it are decided, so it is judged as it would be in order."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol import PARALLEL_FROM, BadSignature, verify_envelopes
from protocol.channel import BatchFrame, Frame

from .room_core import Peer, PendingChecks

if TYPE_CHECKING:
    from .agent import Agent

APART_FROM = PARALLEL_FROM // 2
"""Sync batches of at least this many envelopes are checked off the loop: handing one to a
thread costs about as much as checking one signature."""


@dataclass
class _Waiting:
    frame: Frame
    pending: PendingChecks | None = None
    signatures: asyncio.Future[list[BadSignature | None]] | None = None

    @property
    def apart(self) -> bool:
        """Whether this frame's signatures are checked apart from the loop."""
        return isinstance(self.frame, BatchFrame) and len(self.frame.envs) >= APART_FROM


class PeerBatches:
    """Per peer device, the frames waiting behind a batch whose signatures are being checked."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._queues: dict[str, deque[_Waiting]] = {}

    def take(self, peer: Peer, frame: Frame) -> bool:
        """Queue `frame` if a batch from `peer` is being checked or it is a large batch itself;
        False: nothing waits, the caller decides it now."""
        waiting = _Waiting(frame)
        queue = self._queues.get(peer.device)
        if queue is None:
            if not waiting.apart:
                return False
            queue = self._queues[peer.device] = deque()
            self.agent.spawn(self._drain(peer, queue))
        queue.append(waiting)
        self._start(queue)
        return True

    def _start(self, queue: deque[_Waiting]) -> None:
        """Send to the threads every batch with only batches ahead of it."""
        core = self.agent.core
        for waiting in queue:
            if not waiting.apart:
                return
            if waiting.pending is None:
                assert isinstance(waiting.frame, BatchFrame)
                waiting.pending = core.to_check(waiting.frame.envs)
                waiting.signatures = asyncio.ensure_future(asyncio.to_thread(
                    verify_envelopes, waiting.pending.pairs, core.verify_pool))

    async def _drain(self, peer: Peer, queue: deque[_Waiting]) -> None:
        """Decide the queued frames in order, each batch once its signatures are checked."""
        core = self.agent.core
        try:
            while queue:
                waiting = queue[0]
                if waiting.signatures is not None and waiting.pending is not None:
                    assert isinstance(waiting.frame, BatchFrame)
                    problems = await waiting.signatures
                    effects = core.checked_batch(peer, waiting.frame, waiting.pending, problems,
                                                 time.monotonic(), int(time.time() * 1000))
                else:
                    effects = core.frame(peer, waiting.frame, time.monotonic(),
                                         int(time.time() * 1000))
                queue.popleft()
                self.agent._run(effects)
                self._start(queue)
        finally:
            self._queues.pop(peer.device, None)
            for waiting in queue:
                if waiting.signatures is not None:
                    waiting.signatures.cancel()
