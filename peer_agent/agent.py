"""One room of the device (device.py): wires the room's server link, its view of the device's
mesh (room_mesh.py), the local log, the outbox and the UI around the room core (`room_core.py`),
carrying out the effects the core decides.

Rules it keeps: a message is stored locally before it is shown or sent; every received
envelope is verified (by the core) before it is stored, shown or passed on; the server is told
about every message it lacks, by whoever holds it.

Presence and liveness are different facts. The server's roster says who is connected to the
server; a link's pings say whether a peer is alive. A peer the server says has left keeps its
link while the link's data channel is open (only its server connection may have broken); once
the link fails, a peer the server does not list is dropped. Without the server, `reach.py`
keeps the agent in the mesh."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from protocol import Envelope, ProtocolError
from protocol.catchup import CatchUp, PullServer
from protocol.channel import AckFrame, Frame, MsgFrame
from protocol.sync import keys_frames_for

from . import trace, ui_state
from .mesh import LinkState, PeerInfo
from .outbox import Outbox
from .peer_batches import PeerBatches
from .reach import Reach
from .receipts import Receipts
from .receiving import Receiving
from .records import PathJournal, Timeline
from .relay import SignalRelay
from .rendezvous import Rendezvous
from .room_core import (
    Broadcast,
    Event,
    Peer,
    Record,
    RefreshKeys,
    Refuse,
    RelaySignal,
    RememberKeys,
    RoomCore,
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
from .room_mesh import RoomMesh
from .room_server import RoomServer
from .roster import RosterCache, roster_file
from .session import server_address
from .sync_streams import SyncStreams
from .ui import Coalesced
from .ui_input import UIError

if TYPE_CHECKING:
    from .device import Device

log = logging.getLogger("gibberish.agent")

# The longest a page waits for a change of the room's state (links, outbox, server link):
# pushes closer together than this are merged into one. Every message changes the outbox
# count, and building the state reads the whole roster and every link's path: at 20 pushes a
# second that was a tenth of a busy agent's time (bench.mesh's profile).
STATE_PUSH_INTERVAL = 0.2


class Agent:
    """One room of the user's device."""

    def __init__(self, device: Device, room: str) -> None:
        self.device = device
        self.config = config = device.config
        self.key = device.key
        self.room = room
        self.user = device.user
        self.store = device.store
        # What the server said of the room: public, private or direct, and for the last two
        # the users on its member list (peers not on it are refused).
        self.kind = "public"
        self.members: set[str] | None = None
        self.roster: dict[str, PeerInfo] = {}
        self.present: set[str] = set()
        self.known = RosterCache(config.data_dir / roster_file(room), self.room)
        self.refused: Counter[str] = Counter()
        # What to decide in this room (protocol/catchup.py inside); woken when it may be due
        # sooner.
        self.core = RoomCore(self.room, self.key.device_id, self.store,
                             CatchUp(interval=config.sync_interval), device.verify_pool)
        self._catchup_wake = asyncio.Event()
        self._catchup_until = math.inf  # when the catch-up loop wakes by itself (monotonic)
        self.batches = PeerBatches(self)
        self.receiving = Receiving(self)
        self.server = RoomServer(self)
        self.client = self.server.client
        self.mesh = RoomMesh(device, room, self.on_peer_link)
        self.receipts = Receipts(self.mesh.send)
        self.outbox = Outbox(self.store, self.client, self.room,
                             on_uploaded=self.server.on_own_upload,
                             durable=device.group_sync.durable)
        self.ui = device.ui
        # What this device saw happen, for the network view (docs/network-view.md).
        self.timeline = Timeline(self._publish_event)
        self.paths = PathJournal(self.store, self.room)
        self.started_at = device.started_at  # tells a page that the process changed
        self._link_states: dict[str, str] = {}
        self.rendezvous: Rendezvous | None = None  # made once signed in (the name is known)
        self.reach = Reach(self)
        self.relay = SignalRelay(self.key.device_id, send_direct=self.reach.send_direct,
                                 neighbours=self.reach.neighbours)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.streams = SyncStreams(self)  # answers to peers' pulls
        self._state_push = Coalesced(self._push_state_now, STATE_PUSH_INTERVAL)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.user = self.device.user
        assert self.device.token is not None, "the device signs in first"
        if self.config.rendezvous_host is not None:
            self.rendezvous = Rendezvous(
                key=self.key, user=self.user, room=self.room,
                host=self.config.rendezvous_host, port=self._rendezvous_port(),
                vouched=self.reach.vouched_peer, on_frame=self.reach.on_path_frame,
                on_session=self.reach.on_rendezvous_session,
                server=server_address(self.config.server_url))
            self.client.rendezvous = await self.rendezvous.start()
        self.paths.start()
        self.timeline.add("started", f"{self.user}'s agent started in #{self.room}")
        self.outbox.start()
        # The roster kept from last time: the mesh can form again while the server is down.
        # The server's roster replaces it once the agent joins.
        for known in self.known.peers():
            if known.device != self.key.device_id:
                self.roster[known.device] = known.info
        self.mesh.update_roster(self.roster.values())
        self.client.start()
        self.spawn(self.reach.keep_in_reach())
        self.spawn(self.mesh.report_links_forever())
        self.spawn(self._catch_up_forever())
        log.info("%s's agent in #%s: rendezvous on %s", self.user, self.room,
                 self.rendezvous.address if self.rendezvous else "(none)")

    async def leave(self) -> None:
        """Leave the room for good: the server tells its members at once (a closed connection
        alone looks like a network fault, which peers linked to us wait out), then close."""
        await self.client.leave()
        await self.close()

    def _rendezvous_port(self) -> int:
        """A port asked for (--rendezvous-port) goes to the first room; the others take free
        ones, published in their presence like any."""
        first = next(iter(self.device.rooms), self.room)
        return self.config.rendezvous_port if first == self.room else 0

    async def close(self) -> None:
        self._state_push.cancel()
        self.receiving.close()
        self.server.close()
        self.receipts.close()
        # Every task the agent starts is in _tasks (the key and ICE refreshes too), so none
        # outlives close().
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.rendezvous is not None:
            await self.rendezvous.close()
        await self.outbox.close()
        await self.client.close()
        await self.mesh.close()
        await self.paths.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task the agent owns: close() cancels it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- peers ------------------------------------------------------------------------------

    def on_peer_link(self, peer: PeerInfo, state: LinkState) -> None:
        if self._link_states.get(peer.device) != state.value:
            self._link_states[peer.device] = state.value
            link = self.mesh.links.get(peer.device)
            self.timeline.add("link", f"data channel to {peer.user} {state.value}",
                              user=peer.user, device=peer.device, state=state.value,
                              rtt_ms=link.rtt_ms if link is not None else None)
        if state == LinkState.CONNECTED:
            self.mesh.report_links()
            self.reach.down_since.pop(peer.device, None)
            self._run(self.core.link_up(Peer(peer.user, peer.device), time.monotonic()))
            self._catchup_wake.set()
            if not self.client.joined:
                self.reach.on_new_path()
        else:
            self.core.link_down(peer.device)  # its report came over that channel
            self.mesh.report_links()
            self.reach.down_since.setdefault(peer.device, time.monotonic())
        if state in (LinkState.FAILED, LinkState.DISCONNECTED):
            # A peer neither answering nor listed by the server is gone: no need to wait out
            # the grace a disconnected link gets. Not from inside the mesh's own callback:
            # it is still updating the link.
            asyncio.get_running_loop().call_soon(self.server.drop_if_gone, peer.device)
        self.push_state()

    def on_room_frame(self, info: PeerInfo, frame: Frame) -> None:
        """A frame of this room from a data channel (parsed once by the device): decided by
        the core, its effects run."""
        peer = Peer(info.user, info.device)
        if self.batches.take(peer, frame):  # a large sync batch is checked off the loop
            return
        if isinstance(frame, MsgFrame):
            self.receiving.live(peer, frame.env)  # with the others of this loop turn
            return
        self.receiving.take()  # the live messages that came before it first
        self._run(self.core.frame(peer, frame, time.monotonic(), int(time.time() * 1000)))

    def refuse_unparsed(self, info: PeerInfo, error: ProtocolError) -> None:
        """A frame from a device of this room that did not parse."""
        self._run(self.core.refused(Peer(info.user, info.device), error))

    def refuse_frame(self, user: str, device: str, reason: str) -> None:
        """Count, log and show a frame dropped from `device`."""
        self.refused[reason.split(":", 1)[0]] += 1
        log.warning("refused a frame from %s (%s): %s", user, device, reason)
        self.timeline.add("refused", f"refused a frame from {user}: {reason[:200]}",
                          user=user, device=device, reason=reason[:200])

    def _run(self, effects: Sequence[RoomEffect]) -> None:
        """Carry out what the room core decided, in order."""
        for effect in effects:
            if isinstance(effect, Send):
                if isinstance(effect.frame, AckFrame):
                    self.receipts.add(effect.device, effect.frame.ids)
                else:
                    self.mesh.send(effect.device, effect.frame.encode())
            elif isinstance(effect, Store):
                self.receiving.store([effect])
            elif isinstance(effect, Show):
                if trace.ON:
                    trace.mark(effect.envelope.id, "ui_queued")
                message = ui_state.message_dict(self, effect.envelope)
                self.publish({"type": "message", "message": message})
                self.device.shown(self.room, message["mine"])
            elif isinstance(effect, Record):
                self.paths.add(effect.message_id, effect.what, effect.fields)
            elif isinstance(effect, Event):
                self.timeline.add(effect.kind, effect.text, **effect.fields)
            elif isinstance(effect, Refuse):
                self._refuse(effect)
            else:
                self._run_other(effect)

    def _run_other(self, effect: RoomEffect) -> None:
        if isinstance(effect, SendMissing):
            self.streams.start(effect.device, effect.vector)
        elif isinstance(effect, ShowDelivery):
            self._push_delivery(effect.message_id)
        elif isinstance(effect, Upload):
            if effect.others:
                self.outbox.wake_after_grace()
            else:
                self.outbox.wake()
        elif isinstance(effect, StateChanged):
            self.push_state()
        elif isinstance(effect, SendKeys):
            for text in keys_frames_for(self.store.known_keys()):
                self.mesh.send(effect.device, text)
        elif isinstance(effect, RememberKeys):
            for k in effect.devices:
                self.store.remember_key(k.id, k.user, k.public_key, effect.source)
        elif isinstance(effect, RefreshKeys):
            self.server.refresh_keys_soon()
        elif isinstance(effect, RelaySignal):
            self.reach.on_relay_frame(effect.peer.user, effect.peer.device, effect.frame)
        elif isinstance(effect, PullServer):
            self.spawn(self._pull_from_server())
        elif isinstance(effect, Broadcast):
            self.mesh.broadcast(effect.frame.encode())

    def _refuse(self, effect: Refuse) -> None:
        peer = effect.peer
        if effect.what == "frame" and peer is not None:
            self.refuse_frame(peer.user, peer.device, f"{effect.code}: {effect.reason}")
            return
        origin = "server" if peer is None else f"peer {peer.user}"
        self.refused[effect.code] += 1
        log.warning("refused a message from %s: %s", origin, effect.reason)
        self.timeline.add("refused", f"refused a message from {origin}: {effect.reason[:200]}",
                          reason=f"{effect.code}: {effect.reason[:200]}")

    async def _pull_from_server(self) -> None:
        try:
            await self.server.catch_up()
        finally:
            self.core.catchup.server_pull_ended()
            self._catchup_wake.set()

    def wake_catch_up(self) -> None:
        """Wake the catch-up loop if new input made something due sooner than it sleeps: what
        is due depends on the clock alone (`CatchUp.due`), and waking for every message stored
        was a tick, a version vector read and a task step per message."""
        next_at = self.core.next_due()
        if next_at is not None and next_at < self._catchup_until:
            self._catchup_wake.set()

    async def _catch_up_forever(self) -> None:
        """Send what the clock made due (digests, a read of the server), then sleep until the
        next thing is due or new input made something due sooner."""
        while True:
            self._catchup_wake.clear()
            self._catchup_until = -math.inf  # running: not to be woken
            self._run(self.core.tick(time.monotonic(), self.client.joined))
            next_at = self.core.next_due()
            self._catchup_until = math.inf if next_at is None else next_at
            delay = None if next_at is None else max(0.0, next_at - time.monotonic())
            try:
                async with asyncio.timeout(delay):
                    await self._catchup_wake.wait()
            except TimeoutError:
                pass

    # -- the user ---------------------------------------------------------------------------

    async def post_message(self, text: str) -> dict[str, Any]:
        """Author, commit and send a message; its dict once it is durable and sent. Posts made
        while an fsync runs share the next one (`GroupSync`); each is sent to peers, shown and
        answered only after its fsync, in the order they were committed."""
        try:
            env = self.store.author_message(self.key, self.room, self.user, text,
                                            int(time.time() * 1000), durable=False)
        except ProtocolError as exc:
            raise UIError(400, exc.code, str(exc)) from exc
        if trace.ON:
            trace.committed(env.id)
        sync = self.device.group_sync
        sync.committed()
        message = ui_state.message_dict(self, env)

        def synced(done: asyncio.Future[None]) -> None:
            # A callback, not code after the await: a request cancelled meanwhile still sends.
            if not done.cancelled() and done.exception() is None:
                if trace.ON:
                    trace.durable(env.id, sync.last_run)
                self._posted(env, message)

        durable = sync.durable()
        durable.add_done_callback(synced)
        await asyncio.shield(durable)
        return message

    def _posted(self, env: Envelope, message: dict[str, Any]) -> None:
        """Our message `env` is durable: send it, show it, upload it."""
        for effect in self.core.posted(env):
            if isinstance(effect, Broadcast):
                self._broadcast_own(env.id, effect.frame.encode())
            elif isinstance(effect, Show):  # with the dict returned to the page that posted
                self.publish({"type": "message", "message": message})
            else:
                self._run([effect])

    def _broadcast_own(self, message_id: str, text: str) -> None:
        sent = self.mesh.broadcast(text)
        if trace.ON:
            trace.mark(message_id, "sent")
            trace.sending = message_id
        peers = [{"user": self.roster[d].user if d in self.roster else d[:8], "device": d}
                 for d in sent]
        self.paths.record(
            message_id, "sent", via="channel", peers=peers,
            text=("sent on the data channels to " + ", ".join(p["user"] for p in peers))
            if peers else "no data channel open: sent to no peer (sync will carry it)")

    def _push_delivery(self, message_id: str) -> None:
        # Our own ids are `<our device>:<seq>`: no read of the log to tell.
        if message_id.startswith(self.key.device_id + ":"):
            self.publish({"type": "delivery", "id": message_id,
                          "delivery": ui_state.delivery_of(self, message_id)})

    def push_state(self) -> None:
        """Push the agent's state to every open page, at most every STATE_PUSH_INTERVAL: a
        busy room changes it with every message, and building it reads the whole roster."""
        self._state_push.request()

    def _push_state_now(self) -> None:
        self.publish({"type": "state", "state": self.state()})

    def publish(self, event: dict[str, Any]) -> None:
        """Push a live event of this room to every open page (each shows the rooms it shows)."""
        event["room"] = self.room
        self.ui.post(event)

    def state(self) -> dict[str, Any]:
        return ui_state.state(self)

    def messages_page(self, before: str | None, limit: int) -> dict[str, Any]:
        return ui_state.messages_page(self, before, limit)

    def _publish_event(self, event: dict[str, Any]) -> None:
        self.publish({"type": "event", "event": event})

