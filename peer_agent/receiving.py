"""Received messages into the room's log: live ones (`msg` frames) a loop turn at a time, and
every `Store` the room core decides committed, then what follows from what was fresh.

A busy room brings several live messages in one turn of the event loop (one from each peer's
channel). They are decided together (`RoomCore.live`: one look-up of what the log holds, the
signatures at once) at the end of the turn, and their stores made in one transaction
(`LocalLog.batch`): one commit where there was one per message. What follows a store (the
showing, the receipt, the path, the upload) runs only after its commit: nothing is shown or
acknowledged that is not in the log. Frames from a peer keep their order: any other frame
first has the live messages before it decided."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from protocol import Envelope, ProtocolError

from . import trace
from .room_effects import Peer, Store

if TYPE_CHECKING:
    from .agent import Agent


class Receiving:
    """The live messages of the current loop turn, and the commits of the room's stores."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._live: list[tuple[Peer, Envelope]] = []
        self._due: asyncio.Handle | None = None

    def live(self, peer: Peer, env: Envelope) -> None:
        """A live message from `peer`: decided at the end of this loop turn with the others."""
        self._live.append((peer, env))
        if self._due is None:
            self._due = asyncio.get_running_loop().call_soon(self.take)

    def take(self) -> None:
        """Decide the live messages waiting now (before any other frame: order is kept)."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        frames, self._live = self._live, []
        if not frames:
            return
        effects = self.agent.core.live(frames, int(time.time() * 1000))
        self.agent._run([e for e in effects if not isinstance(e, Store)])
        self.store([e for e in effects if isinstance(e, Store)])

    def store(self, stores: Sequence[Store]) -> None:
        """Commit what the core verified, in one transaction, then run what follows from
        what was fresh in each."""
        log = self.agent.store
        with log.batch():
            done = [(store, self._commit(store)) for store in stores]
        for store, fresh in done:
            if fresh is None:
                continue
            if trace.ON and store.live:
                trace.marks(fresh, "stored")
            self.agent._run(self.agent.core.stored(store, fresh, time.monotonic()))
        self.agent.wake_catch_up()

    def _commit(self, store: Store) -> list[Envelope] | None:
        """The fresh envelopes of `store` once written (None: it was refused)."""
        peer = store.peer
        if trace.ON and store.live:
            trace.marks(store.envelopes, "verified")
        try:
            return self.agent.store.add_many(store.envelopes,
                                             "server" if peer is None else f"peer:{peer.device}")
        except ProtocolError as exc:
            if peer is not None:
                self.agent.refuse_frame(peer.user, peer.device, f"{exc.code}: {exc}")
            return None

    def close(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
        self._live.clear()
