"""The room core: what one device does in one room, without doing any I/O itself.

Frames from peers, link changes, the server's word, posts and clock ticks go in; effects come
out (`Send`, `Broadcast`, `Store`, `Show`, `Refuse`, `Event`, `Record`, …, listed in
`room_effects.py`), which the agent carries out in order, in the manner of python-websockets'
`protocol.py`. The core reads the room's log through `LogView` (keys, vector, gaps: the log
is the one place these live, so the core keeps no copy to fall out of step with it) and never
writes: a `Store` effect asks the agent to commit envelopes, and the agent tells the core what
was fresh with `stored()`.

Rules kept here, once: a received envelope is taken only if it passes the checks of
`room_checks.py` (its room, its author's key, its signature, the Lamport horizon), which the
core inherits. Live messages that came in one loop turn are checked together (`live`).
Receipts name only what we stored from the peer; catch-up follows `protocol.catchup`. No
asyncio, no aiortc, no clock read: time is passed in (`now` in monotonic seconds for the
catch-up rules, `now_ms` since the epoch for the Lamport horizon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from protocol import (
    Envelope,
    ProtocolError,
    verify_envelopes,
)
from protocol.catchup import CatchUp, Pull, SendDigest
from protocol.catchup import Effect as CatchUpEffect
from protocol.channel import (
    AckFrame,
    BatchFrame,
    DigestFrame,
    Frame,
    KeysFrame,
    LinksFrame,
    MsgFrame,
    SignalFrame,
    VectorFrame,
)
from protocol.links import LinkReport
from protocol.vector import vector_digest

from .room_checks import (
    RECENTLY_VERIFIED,
    EnvelopeChecks,
    LogView,
    PendingChecks,
    UnknownAuthor,
    UnknownDevice,
)
from .room_effects import (
    Broadcast,
    Event,
    Peer,
    Record,
    RefreshKeys,
    Refuse,
    RelaySignal,
    RememberKeys,
    RoomEffect,
    Send,
    SendKeys,
    SendMissing,
    Show,
    ShowDelivery,
    StateChanged,
    Store,
    Upload,
)

__all__ = [
    "RECENTLY_VERIFIED", "Broadcast", "Delivery", "Event", "LogView", "Peer", "PendingChecks",
    "Record", "RefreshKeys", "Refuse", "RelaySignal", "RememberKeys", "RoomCore", "RoomEffect",
    "Send", "SendKeys", "SendMissing", "Show", "ShowDelivery", "StateChanged", "Store",
    "UnknownAuthor", "UnknownDevice", "Upload",
]

@dataclass
class Delivery:
    """Which peers acknowledged a message, and whether the server stored it."""

    peers: set[str] = field(default_factory=set)
    server: bool = False


class RoomCore(EnvelopeChecks):
    """One device in one room: decides, the caller does."""

    def __init__(self, room: str, device: str, log: LogView, catchup: CatchUp,
                 verify_pool: Executor | None = None) -> None:
        super().__init__(room, log, verify_pool)
        self.device = device
        self.catchup = catchup
        self.delivery: dict[str, Delivery] = {}
        # What each linked peer last reported of its own data channels (protocol/links.py).
        self.reported: dict[str, tuple[LinkReport, ...]] = {}

    # -- frames from peers ------------------------------------------------------------------

    def frame(self, peer: Peer, frame: Frame, now: float, now_ms: int) -> list[RoomEffect]:
        """React to one frame parsed from `peer`'s data channel."""
        effects: list[RoomEffect] = []
        if isinstance(frame, MsgFrame):
            return self.live([(peer, frame.env)], now_ms)
        if isinstance(frame, BatchFrame):
            pending = self.to_check(frame.envs)
            return self.checked_batch(peer, frame, pending, verify_envelopes(
                pending.pairs, self.verify_pool), now, now_ms)
        if isinstance(frame, VectorFrame):
            effects.append(SendMissing(peer.device, frame.vector))
            effects += self._catch_up(self.catchup.vector_received(
                peer.device, frame.vector, self.log.vector(self.room), now))
        elif isinstance(frame, DigestFrame):
            ours = vector_digest(self.log.vector(self.room))
            effects += self._catch_up(self.catchup.digest_received(
                peer.device, frame.digest, ours, now))
        elif isinstance(frame, KeysFrame):
            new = tuple(k for k in frame.devices if self.log.key_for(k.id) is None)
            if new:
                effects.append(RememberKeys(new, f"peer:{peer.device}"))
        elif isinstance(frame, AckFrame):
            self._acked(peer, frame.ids, effects)
        elif isinstance(frame, LinksFrame):
            if self.reported.get(peer.device) != frame.links:
                self.reported[peer.device] = frame.links
                effects.append(StateChanged())
        elif isinstance(frame, SignalFrame):
            effects.append(RelaySignal(peer, frame))
        # Ping and pong belong to the mesh, which answers them before frames reach the core.
        return effects

    def live(self, frames: Sequence[tuple[Peer, Envelope]], now_ms: int) -> list[RoomEffect]:
        """Live messages (`msg` frames) from peers, in the order they came: checked together
        (one look-up of what the log holds, the signatures at once), then a `Store` per peer,
        in the order each first came, which the agent may commit in one transaction.
        A busy loop turn brings several."""
        effects: list[RoomEffect] = []
        pending = self.to_check([env for _, env in frames])
        outcomes = self._settled(pending, verify_envelopes(pending.pairs, self.verify_pool),
                                 [peer for peer, _ in frames], now_ms, effects)
        taken: dict[Peer, list[Envelope]] = {}
        for (peer, _), outcome in zip(frames, outcomes, strict=True):
            envs = taken.setdefault(peer, [])
            if isinstance(outcome, Envelope):
                envs.append(outcome)
        for peer, envs in taken.items():
            effects.append(Store(tuple(envs), peer, True, sum(p == peer for p, _ in frames)))
        return effects

    def checked_batch(self, peer: Peer, frame: BatchFrame, pending: PendingChecks, problems:
                      Sequence[ProtocolError | None], now: float, now_ms: int) -> list[RoomEffect]:
        """`frame` for a sync batch whose signatures were checked apart (`to_check`)."""
        effects: list[RoomEffect] = []
        good = self.settle(pending, problems, peer, now_ms, effects)
        effects.append(Store(tuple(good), peer, False, len(frame.envs)))
        if not frame.more:
            effects += self._catch_up(self.catchup.answer_ended(peer.device, now))
        return effects

    def refused(self, peer: Peer, error: ProtocolError) -> list[RoomEffect]:
        """A frame from `peer` that did not parse."""
        return [Refuse(peer, error.code, str(error))]

    def stored(self, store: Store, fresh: Sequence[Envelope], now: float) -> list[RoomEffect]:
        """What follows a `Store` the agent committed: `fresh` are the envelopes new to the log."""
        effects: list[RoomEffect] = []
        peer, live = store.peer, store.live
        if peer is None:
            for env in fresh:
                effects.append(Show(env))
            self._fresh(None, fresh, now)
            return effects
        # A receipt tells the sender its own messages are held here: only those it authored,
        # the only ones its delivery marks show (a sync batch also brings others' messages, and
        # a catch-up of 100,000 sent as many ids back for nothing). Each id once, though a
        # replay may bring it twice in one turn.
        own = tuple(dict.fromkeys(e.id for e in store.envelopes if e.device == peer.device))
        if own:
            effects.append(Send(peer.device, AckFrame(own)))
        if live and len(fresh) < len(store.envelopes):
            # A live message is sent once, by its author, on each channel: one held already
            # was replayed (perhaps in the same loop turn as the first copy). Ignored (the
            # log keeps one copy), and said.
            held = _replayed(store.envelopes, fresh)
            effects.append(Event(
                "refused", f"ignored a replayed message from {peer.user}: {held.id} is "
                f"already held", {"user": peer.user, "device": peer.device,
                                  "reason": f"replayed: {held.id} already held"}))
        via = "channel" if live else "sync"
        details: dict[str, dict[str, Any]] = {}  # one per text: a sync batch's steps share it
        for env in fresh:
            text = _received_text(env, peer, live)
            detail = details.get(text)
            if detail is None:
                detail = details[text] = {"via": via, "user": peer.user, "device": peer.device,
                                          "text": text}
            effects.append(Record(env.id, "received", detail))
            effects.append(Show(env))
        self._fresh(peer.device, fresh, now)
        if not live:
            # An empty batch ends every exchange of version vectors: nothing was missing.
            text = (f"sync batch from {peer.user}: {store.received} messages, {len(fresh)} new"
                    if store.received else f"in sync with {peer.user}: nothing missing")
            effects.append(Event("sync", text, {"user": peer.user, "device": peer.device,
                                                "count": store.received, "fresh": len(fresh)}))
        if fresh:
            effects.append(Upload(others=True))
        if live and self.log.gaps(self.room):
            # A gap: a message was missed; ask this peer for what we lack.
            effects += self._catch_up(self.catchup.gap_seen(peer.device, now))
        return effects

    def _acked(self, peer: Peer, ids: Sequence[str], effects: list[RoomEffect]) -> None:
        for message_id in ids:
            delivery = self.delivery.get(message_id)
            if delivery is not None and peer.device not in delivery.peers:
                delivery.peers.add(peer.device)
                effects.append(Record(message_id, "acked", {
                    "user": peer.user, "device": peer.device,
                    "text": f"{peer.user} stored it (receipt)"}))
                effects.append(ShowDelivery(message_id))

    def _fresh(self, source: str | None, fresh: Sequence[Envelope], now: float) -> None:
        """Fresh messages arrived: linked peers that may lack them get our digest soon."""
        if not fresh:
            return
        reports = {device: frozenset(r.device for r in links if r.state == "connected")
                   for device, links in self.reported.items()}
        self.catchup.fresh(source, {env.device for env in fresh}, reports, now)

    def _catch_up(self, decided: Sequence[CatchUpEffect]) -> list[RoomEffect]:
        """The catch-up rules' decisions as frames to send (or a read of the server)."""
        effects: list[RoomEffect] = []
        digest: str | None = None
        for effect in decided:
            if isinstance(effect, SendDigest):
                digest = digest or vector_digest(self.log.vector(self.room))
                effects.append(Send(effect.device, DigestFrame(digest)))
            elif isinstance(effect, Pull):
                effects.append(Send(effect.device, VectorFrame(self.log.vector(self.room))))
            else:
                effects.append(effect)
        return effects

    # -- links, the server, the user, the clock ---------------------------------------------

    def link_up(self, peer: Peer, now: float) -> list[RoomEffect]:
        """`peer`'s data channel opened: compare vectors and tell it the keys we know."""
        return [*self._catch_up(self.catchup.link_up(peer.device, now)), SendKeys(peer.device)]

    def link_down(self, device: str) -> None:
        """`device`'s data channel is no longer open: its report and pull went with it."""
        self.reported.pop(device, None)
        self.catchup.link_down(device)

    def forget(self, device: str) -> None:
        """`device` left the room."""
        self.reported.pop(device, None)

    def server_named(self, ids: Mapping[str, int], now: float) -> list[RoomEffect]:
        """The server stored these ids: ours are delivered to it; ones we lack are pulled."""
        effects: list[RoomEffect] = []
        for message_id, cursor in ids.items():
            effects.append(Record(message_id, "on_server", {
                "cursor": cursor, "text": f"the server stored it at cursor {cursor}"}))
        effects += self.uploaded(ids)
        self.catchup.server_named(ids, self.log.vector(self.room), now,
                                  linked=self.catchup.linked())
        return effects

    def uploaded(self, ids: Mapping[str, int]) -> list[RoomEffect]:
        """The server acknowledged these ids; those of our messages change their delivery."""
        effects: list[RoomEffect] = []
        for message_id in ids:
            # Only our own messages show a delivery: others' ids (every `stored` broadcast
            # names them) would cost a UI update that changes nothing.
            if message_id.partition(":")[0] != self.device:
                continue
            self.delivery.setdefault(message_id, Delivery()).server = True
            effects.append(ShowDelivery(message_id))
        effects.append(StateChanged())
        return effects

    def posted(self, env: Envelope) -> list[RoomEffect]:
        """This device authored `env` (already in the log): send it to every linked peer."""
        self.delivery[env.id] = Delivery()
        return [Record(env.id, "authored", {"at": env.ts,
                                            "text": f"written here by {env.author}"}),
                Broadcast(MsgFrame(env)), Upload(), Show(env), StateChanged()]

    def tick(self, now: float, server_up: bool) -> list[RoomEffect]:
        """What the clock made due: digests to linked peers, a read of the server."""
        return self._catch_up(self.catchup.due(now, self.log.vector(self.room), server_up))

    def next_due(self) -> float | None:
        """When `tick` next has something to do (monotonic seconds), or None."""
        return self.catchup.next_due()


def _replayed(envelopes: Sequence[Envelope], fresh: Sequence[Envelope]) -> Envelope:
    """The first of `envelopes` that is not one of the `fresh` (each fresh one counts once)."""
    left = list(fresh)
    for env in envelopes:
        if env in left:
            left.remove(env)
        else:
            return env
    raise ValueError("every envelope was fresh")


def _received_text(env: Envelope, peer: Peer, live: bool) -> str:
    """How a message came, for its path: from its author, or passed on by another peer."""
    if live:
        return f"received from {peer.user} live on the data channel"
    if env.device == peer.device:
        return f"received from {peer.user} by anti-entropy (sync batch)"
    return (f"received via {peer.user}: {env.author}'s message, passed on by anti-entropy "
            f"(sync batch)")
