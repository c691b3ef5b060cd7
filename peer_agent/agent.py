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
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from protocol import MAX_BATCH, ProtocolError, VersionVector
from protocol.catchup import CatchUp, PullServer
from protocol.channel import Frame
from protocol.links import MAX_LINKS, LinkReport, LinksFrame
from protocol.roster import kept_on_join
from protocol.sync import batches_for, keys_frames_for

from . import ui_state
from .mesh import LinkState, PeerInfo
from .outbox import Outbox
from .reach import Reach
from .records import NOTE_MAX_CHARS, PathJournal, Timeline
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
from .roster import RosterCache, roster_file
from .session import server_address
from .signaling_client import SignalingClient, SignInError
from .ui import UIError

if TYPE_CHECKING:
    from .device import Device

log = logging.getLogger("gibberish.agent")

# How often each agent tells its linked peers about its data channels (and on every change),
# for their network views.
LINKS_REPORT_INTERVAL = 5.0


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
        self._learned: dict[str, int] = {}  # device -> the join generation it was learned in
        self.present: set[str] = set()
        self.known = RosterCache(config.data_dir / roster_file(room), self.room)
        self.refused: Counter[str] = Counter()
        # What to decide in this room (protocol/catchup.py inside); woken when it may be due
        # sooner.
        self.core = RoomCore(self.room, self.key.device_id, self.store,
                             CatchUp(interval=config.sync_interval))
        self._catchup_wake = asyncio.Event()
        self.client = SignalingClient(
            config.server_url, self.room, self.key,
            on_joined=self._on_joined, on_peer_joined=self._on_peer_joined,
            on_peer_left=self._on_peer_left, on_signal=self._on_signal,
            on_stored=self._on_stored, on_link=self._on_server_link,
            on_members=self._on_members, on_removed=self._on_removed,
            reconnect_max=config.reconnect_max,
        )
        self.mesh = RoomMesh(device, room, self.on_peer_link)
        self.outbox = Outbox(self.store, self.client, self.room, on_uploaded=self._on_own_upload)
        self.ui = device.ui
        # What this device saw happen, for the network view (docs/network-view.md).
        self.timeline = Timeline(self._publish_event)
        self.paths = PathJournal(self.store, self.room)
        self._server_up: bool | None = None
        self.started_at = device.started_at  # tells a page that the process changed
        self._link_states: dict[str, str] = {}
        self.rendezvous: Rendezvous | None = None  # made once signed in (the name is known)
        self.reach = Reach(self)
        self.relay = SignalRelay(self.key.device_id, send_direct=self.reach.send_direct,
                                 neighbours=self.reach.neighbours)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._key_refresh: asyncio.Task[None] | None = None
        self._ice_refresh: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.user = self.device.user
        assert self.device.token is not None, "the device signs in first"
        self.client.use_token(self.device.token, self.user)
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
        self.spawn(self._report_links_forever())
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

    # -- the server -------------------------------------------------------------------------

    async def send_signal(self, to: str, kind: str, payload: dict[str, Any]) -> None:
        """Signal through the server; when it cannot (down, frozen, or `to` is not connected to
        it), through the peers."""
        if self.client.joined and await self.client.signal(to, kind, payload):
            self.reach.unrouted.discard(to)
            return
        if self.relay.send(to, kind, payload):
            self.reach.unrouted.discard(to)
        else:
            self.reach.unrouted.add(to)

    def _on_server_link(self, up: bool) -> None:
        if up:
            self.outbox.wake()
        if up != self._server_up:
            if up:
                text = "server link up" if self._server_up is None else "server back: link up"
            else:
                text = "server lost" if self._server_up else "cannot reach the server"
            self.timeline.add("server", text, state="connected" if up else "down")
            self._server_up = up
        self.push_state()

    def describe(self, room: dict[str, Any]) -> None:
        """Take what the server says of the room (join reply, creation, `members`): its kind
        and member list."""
        self.kind = str(room.get("kind") or "public")
        members = room.get("members")
        self.members = ({m for m in members if isinstance(m, str)}
                        if isinstance(members, list) else None)
        self.device.push_rooms()

    async def _on_members(self, data: dict[str, Any]) -> None:
        """The member list changed: devices of users taken off it are dropped and refused."""
        self.describe(data)
        for device, peer in list(self.roster.items()):
            if not self.admits(peer.user):
                self.timeline.add("left", f"{peer.user} is no longer a member",
                                  user=peer.user, device=device)
                self._drop_peer(device)
        self.push_state()

    async def _on_removed(self, data: dict[str, Any]) -> None:
        """This user was taken off the room's member list: the device leaves the room."""
        self.timeline.add("removed", f"removed from #{self.room} by its owner")
        self.device.spawn(self.device.leave(self.room))

    async def _on_joined(self, reply: dict[str, Any]) -> None:
        self.describe(reply)
        self.mesh.ice_servers = list(reply.get("ice_servers") or [])
        self._refresh_ice_servers_later(reply.get("ice_ttl"))
        # The server's roster is who is present now; a peer whose data channel is still open
        # stays even if the server (just restarted) does not list it yet.
        # A peer_joined or an offer that came while the join ran is newer than the reply and
        # stays too: rebuilding from the reply left such a pair unlinked.
        links = self.mesh.links
        linked = {d for d, link in links.items() if link.state == LinkState.CONNECTED}
        stay = kept_on_join({d: self._learned.get(d, 0) for d in self.roster}, (),
                            self.client.join_generation, linked)
        self.roster = {d: p for d, p in self.roster.items() if d in stay}
        self.present = set()
        for peer in reply.get("peers", []):
            self._add_from_server(peer)
        self.known.save()
        self.mesh.update_roster(self.roster.values())
        for device in self.roster:
            # Offers made before the join (from the cached roster, with no path) went nowhere.
            self.mesh.nudge(device, force=device in self.reach.unrouted)
        self.push_state()
        await self._refresh_keys()
        await self._catch_up_from_server()

    def _refresh_ice_servers_later(self, ttl: Any) -> None:
        """TURN credentials minted by the server expire after `ttl` seconds (TURN_TTL): fetch
        fresh ones at half their life, so that connections made later can still get a relay."""
        if self._ice_refresh is not None:
            self._ice_refresh.cancel()
            self._ice_refresh = None
        if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:
            self._ice_refresh = asyncio.ensure_future(self._refresh_ice_servers(ttl / 2))
            self._tasks.add(self._ice_refresh)
            self._ice_refresh.add_done_callback(self._tasks.discard)

    async def _refresh_ice_servers(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                servers, ttl = await self.client.ice_config()
            except (SignInError, OSError, aiohttp.ClientError) as exc:
                log.info("could not refresh the ICE servers: %s", exc)
                delay = 10.0
                continue
            self.mesh.ice_servers = servers
            if ttl is None:
                return
            delay = ttl / 2

    def _add_from_server(self, peer: dict[str, Any]) -> PeerInfo | None:
        """Take a roster entry from the server: the mesh links to it, its key is vouched for,
        and the roster cache remembers it with its rendezvous address."""
        info = PeerInfo(user=peer["user"], device=peer["device"], public_key=peer["public_key"])
        if info.device == self.key.device_id or not self.admits(info.user):
            return None
        self.roster[info.device] = info
        self._learned[info.device] = self.client.join_generation
        self.present.add(info.device)
        self.store.remember_key(info.device, info.user, info.public_key, "server")
        self.known.remember(info, peer.get("rendezvous"), int(time.time() * 1000))
        return info

    def admits(self, user: str) -> bool:
        """Whether `user` may take part here: anyone in a public room, members in the others."""
        return self.members is None or user in self.members

    async def _on_peer_joined(self, data: dict[str, Any]) -> None:
        info = self._add_from_server(data["peer"])
        self.known.save()
        self.mesh.update_roster(self.roster.values())
        if info is not None:
            self.timeline.add("joined", f"{info.user} joined (device {info.device[:8]})",
                              user=info.user, device=info.device)
            # It may be a restart: offer now rather than when the retry backoff ends, and
            # make sure an open link is not one to its previous process.
            self.mesh.nudge(info.device)
            self.mesh.probe(info.device)
        self.push_state()

    async def _on_peer_left(self, data: dict[str, Any]) -> None:
        device = data["device"]
        self.present.discard(device)
        peer = self.roster.get(device)
        user = peer.user if peer is not None else "?"
        self.timeline.add("left", f"{user} left the server (device {device[:8]})",
                          user=user, device=device)
        link = self.mesh.links.get(device)
        if data.get("reason") != "left" and link is not None and link.state == LinkState.CONNECTED:
            # Only its server connection may be gone: the pings will tell if the peer is.
            log.info("the server says %s left; its data channel is open, so it stays", device[:8])
        else:
            self._drop_peer(device)
        self.push_state()

    def _drop_peer(self, device: str) -> None:
        self.core.forget(device)
        self.roster.pop(device, None)
        self.reach.down_since.pop(device, None)
        self.mesh.peer_left(device)

    def _drop_if_gone(self, device: str) -> None:
        """Drop a peer whose link failed if the server, reachable, does not list it."""
        link = self.mesh.links.get(device)
        if (link is not None and link.state != LinkState.CONNECTED and self.client.joined
                and device not in self.present):
            log.info("link to %s failed and the server does not list it: dropped", device[:8])
            self._drop_peer(device)
            self.push_state()

    async def _on_signal(self, data: dict[str, Any]) -> None:
        sender = data.get("from") or {}
        if sender.get("device") not in self.roster and sender.get("public_key"):
            # An offer can overtake the peer_joined that announces its sender; the server
            # vouches for the sender's key in the signal itself.
            self._add_from_server(sender)
            self.mesh.update_roster(self.roster.values())
        await self.mesh.handle_signal(sender.get("user", ""), sender.get("device", ""),
                                      str(data.get("kind")), data.get("payload") or {})

    def on_signal_refused(self, device: str, reason: str) -> None:
        """A forged, malformed or unexpected offer, answer or candidate: counted and shown like
        every other refusal."""
        peer = self.roster.get(device)
        user = peer.user if peer is not None else f"device {device[:8]}"
        self.refused["signal_refused"] += 1
        self.timeline.add("refused", f"refused a signal from {user}: {reason[:200]}",
                          user=user, device=device, reason=f"signal refused: {reason[:200]}")

    async def _on_stored(self, data: dict[str, Any]) -> None:
        ids = {m["id"]: int(m["cursor"]) for m in data.get("messages", [])
               if isinstance(m, dict) and "id" in m and "cursor" in m}
        self.store.mark_known_by_server(self.room, ids)
        # Ids this device lacks are read from the server's history soon, unless a peer brings
        # them first.
        self._run(self.core.server_named(ids, time.monotonic()))
        self._catchup_wake.set()

    def _on_own_upload(self, ids: dict[str, int]) -> None:
        """This agent's outbox uploaded these and the server acknowledged them."""
        for message_id, cursor in ids.items():
            self.paths.record(message_id, "uploaded", cursor=cursor,
                              text=f"uploaded from here; the server stored it at cursor {cursor}")
        if ids:
            last = max(ids.values())
            count = len(ids)
            self.timeline.add(
                "uploaded",
                f"server stored {count} message{'s' if count != 1 else ''} (up to cursor {last})",
                count=count, cursor=last)
        self._run(self.core.uploaded(ids))

    async def _refresh_keys(self) -> None:
        try:
            for device in await self.client.room_keys():
                self.store.remember_key(device["id"], device["user"], device["public_key"],
                                        "server")
        except (SignInError, OSError) as exc:
            log.info("could not refresh the room's keys: %s", exc)

    async def _catch_up_from_server(self) -> None:
        """Read the server's history after the last cursor seen, verified like any message."""
        after = self.store.server_cursor(self.room)
        while True:
            try:
                rows, last = await self.client.history(after)
            except (SignInError, OSError) as exc:
                log.info("history catch-up stopped: %s", exc)
                return
            effects: list[RoomEffect] = []
            envelopes = self.core.verify_all((_envelope_fields(row) for row in rows), None,
                                             int(time.time() * 1000), effects)
            by_id = {f"{row['device']}:{row['seq']}": int(row["cursor"]) for row in rows}
            cursors = {env.id: by_id[env.id] for env in envelopes}
            self._run(effects)
            fresh = self.store.add_many(envelopes, "server")
            for env in fresh:
                self.paths.record(env.id, "received", via="server", cursor=cursors[env.id],
                                  text=f"received via the server: read from its history "
                                       f"(cursor {cursors[env.id]})")
            store = Store(tuple(envelopes), None, False, len(rows))
            self._run(self.core.stored(store, fresh, time.monotonic()))
            self._catchup_wake.set()
            if rows:
                self.timeline.add(
                    "history", f"history from the server: {len(rows)} messages, "
                    f"{len(fresh)} new", count=len(rows), fresh=len(fresh))
            self.store.mark_known_by_server(self.room, cursors)
            self.store.set_server_cursor(self.room, last)
            if not rows or last == after:
                return
            after = last

    # -- peers ------------------------------------------------------------------------------

    def on_peer_link(self, peer: PeerInfo, state: LinkState) -> None:
        if self._link_states.get(peer.device) != state.value:
            self._link_states[peer.device] = state.value
            link = self.mesh.links.get(peer.device)
            self.timeline.add("link", f"data channel to {peer.user} {state.value}",
                              user=peer.user, device=peer.device, state=state.value,
                              rtt_ms=link.rtt_ms if link is not None else None)
        if state == LinkState.CONNECTED:
            self._report_links()
            self.reach.down_since.pop(peer.device, None)
            self._run(self.core.link_up(Peer(peer.user, peer.device), time.monotonic()))
            self._catchup_wake.set()
            if not self.client.joined:
                self.reach.on_new_path()
        else:
            self.core.link_down(peer.device)  # its report came over that channel
            self._report_links()
            self.reach.down_since.setdefault(peer.device, time.monotonic())
        if state in (LinkState.FAILED, LinkState.DISCONNECTED):
            # A peer neither answering nor listed by the server is gone: no need to wait out
            # the grace a disconnected link gets. Not from inside the mesh's own callback:
            # it is still updating the link.
            asyncio.get_running_loop().call_soon(self._drop_if_gone, peer.device)
        self.push_state()

    def on_room_frame(self, info: PeerInfo, frame: Frame) -> None:
        """A frame of this room from a data channel (parsed once by the device): decided by
        the core, its effects run."""
        peer = Peer(info.user, info.device)
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
                self.mesh.send(effect.device, effect.frame.encode())
            elif isinstance(effect, Store):
                self._store(effect)
            elif isinstance(effect, Show):
                message = ui_state.message_dict(self, effect.envelope)
                self.publish({"type": "message", "message": message})
                self.device.shown(self.room, message["mine"])
            elif isinstance(effect, Record):
                self.paths.record(effect.message_id, effect.what, **effect.fields)
            elif isinstance(effect, Event):
                self.timeline.add(effect.kind, effect.text, **effect.fields)
            elif isinstance(effect, Refuse):
                self._refuse(effect)
            else:
                self._run_other(effect)

    def _run_other(self, effect: RoomEffect) -> None:
        if isinstance(effect, SendMissing):
            self._send_missing(effect.device, effect.vector)
        elif isinstance(effect, ShowDelivery):
            self._push_delivery(effect.message_id)
        elif isinstance(effect, Upload):
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
            if self._key_refresh is None or self._key_refresh.done():
                self._key_refresh = self.spawn(self._refresh_keys())
        elif isinstance(effect, RelaySignal):
            self.reach.on_relay_frame(effect.peer.user, effect.peer.device, effect.frame)
        elif isinstance(effect, PullServer):
            self.spawn(self._pull_from_server())
        elif isinstance(effect, Broadcast):
            self.mesh.broadcast(effect.frame.encode())

    def _store(self, effect: Store) -> None:
        """Commit what the core verified, and run what follows from what was fresh."""
        source = "server" if effect.peer is None else f"peer:{effect.peer.device}"
        try:
            fresh = self.store.add_many(effect.envelopes, source)
        except ProtocolError as exc:
            if effect.peer is not None:
                self.refuse_frame(effect.peer.user, effect.peer.device, str(exc))
            return
        self._run(self.core.stored(effect, fresh, time.monotonic()))
        self._catchup_wake.set()

    def _refuse(self, effect: Refuse) -> None:
        peer = effect.peer
        if effect.what == "frame" and peer is not None:
            self.refuse_frame(peer.user, peer.device, effect.reason)
            return
        origin = "server" if peer is None else f"peer {peer.user}"
        self.refused[effect.code] += 1
        log.warning("refused a message from %s: %s", origin, effect.reason)
        self.timeline.add("refused", f"refused a message from {origin}: {effect.reason[:200]}",
                          reason=f"{effect.code}: {effect.reason[:200]}")

    def _report_links(self) -> None:
        """Tell the linked peers which data channels this device has, with their RTTs."""
        links = tuple(LinkReport(device, link.state.value, link.rtt_ms)
                      for device, link in sorted(self.mesh.links.items())[:MAX_LINKS])
        self.mesh.broadcast(LinksFrame(links).encode())

    async def _report_links_forever(self) -> None:
        while True:
            await asyncio.sleep(LINKS_REPORT_INTERVAL)
            self._report_links()

    async def _pull_from_server(self) -> None:
        try:
            await self._catch_up_from_server()
        finally:
            self.core.catchup.server_pull_ended()
            self._catchup_wake.set()

    async def _catch_up_forever(self) -> None:
        """Send what the clock made due (digests, a read of the server), then sleep until the
        next thing is due or new input may have made something due sooner."""
        while True:
            self._catchup_wake.clear()
            self._run(self.core.tick(time.monotonic(), self.client.joined))
            next_at = self.core.next_due()
            delay = None if next_at is None else max(0.0, next_at - time.monotonic())
            try:
                async with asyncio.timeout(delay):
                    await self._catchup_wake.wait()
            except TimeoutError:
                pass

    def _send_missing(self, device: str, vector: VersionVector) -> None:
        """Send a peer everything its vector says it lacks, walking the log in bounded
        batches; the last batch says `more: false`."""
        after: tuple[str, int] | None = None
        while True:
            batch = self.store.missing_for(self.room, vector, limit=MAX_BATCH, after=after)
            for frame in batches_for(batch, more_after=bool(batch)):
                if not self.mesh.send(device, frame):
                    return
            peer = self.roster.get(device)
            user = peer.user if peer is not None else device[:8]
            for env in batch:
                self.paths.record(env.id, "sent", via="sync", peers=[{"user": user,
                                                                      "device": device}],
                                  text=f"sent to {user} by anti-entropy (sync batch)")
            if not batch:
                return
            after = (batch[-1].device, batch[-1].seq)

    # -- the user ---------------------------------------------------------------------------

    async def post_message(self, text: str) -> dict[str, Any]:
        try:
            env = self.store.author_message(self.key, self.room, self.user, text,
                                            int(time.time() * 1000))
        except ProtocolError as exc:
            raise UIError(400, exc.code, str(exc)) from exc
        message = ui_state.message_dict(self, env)
        for effect in self.core.posted(env):
            if isinstance(effect, Broadcast):
                self._broadcast_own(env.id, effect.frame.encode())
            elif isinstance(effect, Show):  # with the dict returned to the page that posted
                self.publish({"type": "message", "message": message})
            else:
                self._run([effect])
        return message

    def _broadcast_own(self, message_id: str, text: str) -> None:
        sent = self.mesh.broadcast(text)
        peers = [{"user": self.roster[d].user if d in self.roster else d[:8], "device": d}
                 for d in sent]
        self.paths.record(
            message_id, "sent", via="channel", peers=peers,
            text=("sent on the data channels to " + ", ".join(p["user"] for p in peers))
            if peers else "no data channel open: sent to no peer (sync will carry it)")

    def _push_delivery(self, message_id: str) -> None:
        env = self.store.get(self.room, message_id)
        if env is not None and env.device == self.key.device_id:
            self.publish({"type": "delivery", "id": message_id,
                          "delivery": ui_state.delivery_dict(self, env)})

    def push_state(self) -> None:
        """Push the agent's state to every open page."""
        self.publish({"type": "state", "state": self.state()})

    def publish(self, event: dict[str, Any]) -> None:
        """Push a live event of this room to every open page (each shows the rooms it shows)."""
        event["room"] = self.room
        self.spawn(self.ui.publish(event))

    def state(self) -> dict[str, Any]:
        return ui_state.state(self)

    def messages_page(self, before: str | None, limit: int) -> dict[str, Any]:
        return ui_state.messages_page(self, before, limit)

    def events(self, limit: int) -> dict[str, Any]:
        return {"events": self.timeline.recent(limit)}

    def note(self, text: str) -> dict[str, Any]:
        """A note in the timeline (the guided demo announces its steps with it)."""
        text = text.strip()
        if not text or len(text) > NOTE_MAX_CHARS:
            raise UIError(400, "invalid_argument",
                          f"a note has 1 to {NOTE_MAX_CHARS} characters")
        return self.timeline.add("note", text)

    def message_path(self, message_id: str) -> dict[str, Any]:
        if self.store.get(self.room, message_id) is None:
            raise UIError(404, "not_found", "this device holds no such message")
        return {"id": message_id, "steps": self.paths.steps(message_id)}

    def _publish_event(self, event: dict[str, Any]) -> None:
        self.publish({"type": "event", "event": event})


def _envelope_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The envelope in a row of the server's history (which adds its cursor)."""
    return {k: row[k] for k in ("room", "author", "device", "seq", "lamport", "ts", "text",
                                "sig")}
