"""One user's device: every room it is in, over one mesh, with one key, one log and one UI.

The device signs in once, holds the device key, the local log of every room and the chat UI,
and one `Mesh`: one RTCPeerConnection and data channel per peer device, whatever rooms the two
share; and one Socket.IO connection to the server, which every room joins, signals and
uploads over (signaling_client.py). Each room is an `Agent` (agent.py) with its own room on
that connection (room_signaling.py), roster, outbox, rendezvous listener and room core, seeing
the mesh through a `RoomMesh` (room_mesh.py).

Frames on a data channel name their room (protocol.channel): the device hands each to that
room, and refuses one for a room it is not in or from a device the room does not list (for a
private room the server lists members only, so a non-member's frames never reach the core).

The rooms joined are remembered in the data dir and joined again on restart; a data dir from
before (one room per agent) is upgraded in place (rooms_file.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import ProtocolError
from protocol.catchup import SYNC_INTERVAL
from protocol.channel import Frame, MsgFrame, parse_room_frame
from protocol.errors import InvalidName
from protocol.names import normalize_room

from . import trace, ui_state
from .agent import Agent
from .group_sync import GroupSync
from .log import LocalLog
from .mesh import LinkState, Mesh, PeerInfo
from .readers import Readers
from .rooms_file import rooms_to_join, save_rooms
from .session import load_or_create_key, sign_in
from .signaling_client import RECONNECT_MAX, SignalingClient, SignInError
from .ui import ChatUI
from .ui_input import UIError

log = logging.getLogger("gibberish.agent")

LOG_FILE = "log.sqlite3"
# A frame of a room whose roster does not list its sender yet is held this long (at most
# EARLY_FRAMES_MAX per room and sender): the sender may have read the room's roster before
# this device heard from the server that it joined. Then it is refused as not_in_room.
EARLY_FRAME_HOLD = 3.0
EARLY_FRAMES_MAX = 64
# How long joining from the UI waits for the server's answer before leaving it to the
# background (the server may be down: the room is joined once it is back).
JOIN_ANSWER_WAIT = 5.0


@dataclass
class AgentConfig:
    server_url: str
    username: str
    data_dir: Path
    rooms: list[str] = field(default_factory=list)
    password: str | None = None
    register: bool = False
    ui_host: str = "127.0.0.1"
    ui_port: int = 0
    ice_hosts: list[str] | None = None
    rendezvous_host: str | None = "127.0.0.1"
    rendezvous_port: int = 0
    sync_interval: float = SYNC_INTERVAL
    reconnect_max: float = RECONNECT_MAX


class Device:
    """The agent process: one device of one user, in every room it joined."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = load_or_create_key(config.data_dir)
        self.user = config.username
        self.store = LocalLog(config.data_dir / LOG_FILE)
        self.group_sync = GroupSync(self.store)
        # Checks catch-up batches' signatures beside the event loop's thread (room_core.py).
        self.verify_pool = ThreadPoolExecutor(len(os.sched_getaffinity(0)),
                                              thread_name_prefix="ed25519")
        self.rooms: dict[str, Agent] = {}
        self.refused: Counter[str] = Counter()
        self.unread: dict[str, int] = {}
        # The rooms the open pages read: their messages are seen, not counted (readers.py).
        self.readers = Readers(self._read_as_seen)
        self.started_at = int(time.time() * 1000)
        self.token: str | None = None
        # The device's one link to the server: sign-in, rooms and direct messages over HTTP,
        # and one Socket.IO connection that every room joins, signals and uploads over.
        self.signaling = SignalingClient(config.server_url, self.key,
                                         reconnect_max=config.reconnect_max)
        self.mesh = Mesh(key=self.key, user=self.user, room_for=self._room_for,
                         send_room_signal=self._send_room_signal, on_frame=self._on_frame,
                         on_link=self._on_link, on_refused=self._on_refused, ice_servers=[])
        self.ui = ChatUI(self, config.ui_host, config.ui_port)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._early: dict[tuple[str, str], list[tuple[PeerInfo, Frame]]] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task of the device (not of a room: leaving a room cancels those)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.user = await sign_in(self.signaling, self.config.data_dir, self.config.server_url,
                                  self.config.username, self.config.password,
                                  self.config.register)
        self.token = self.signaling.token
        self.signaling.start()
        await self.ui.start()
        for room in rooms_to_join(self.config.data_dir, self.store.rooms, self.config.rooms):
            await self._open(room)
        self._save_rooms()
        log.info("%s's agent: UI on %s, rooms %s", self.user, self.ui.url,
                 ", ".join(self.rooms) or "(none)")

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for agent in list(self.rooms.values()):
            await agent.close()
        await self.mesh.close()
        await self.signaling.close()
        self.readers.close()
        await self.ui.close()
        await self.group_sync.close()
        self.verify_pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def _save_rooms(self) -> None:
        save_rooms(self.config.data_dir, self.rooms)

    async def _open(self, room: str) -> Agent:
        agent = Agent(self, room)
        self.rooms[room] = agent
        self.unread[room] = self.store.unread(room)
        await agent.start()
        return agent

    # -- rooms, for the UI ------------------------------------------------------------------

    def room(self, name: str | None) -> Agent:
        """The room named (the first room joined when no name is given)."""
        if name is None:
            if not self.rooms:
                raise UIError(404, "no_room", "this agent is in no room yet: join one")
            return next(iter(self.rooms.values()))
        agent = self.rooms.get(name)
        if agent is None:
            raise UIError(404, "no_such_room", f"this agent is not in room {name[:64]!r}")
        return agent

    def rooms_list(self) -> list[dict[str, Any]]:
        return [{"name": name, "kind": agent.kind, "unread": self.unread.get(name, 0),
                 "server": agent.client.joined}
                for name, agent in self.rooms.items()]

    async def join(self, name: str, private: bool = False) -> dict[str, Any]:
        """Join (or, with `private`, create as private) a room; its state."""
        try:
            room = normalize_room(name)
        except InvalidName as exc:
            raise UIError(400, "invalid_name", str(exc)) from None
        made: dict[str, Any] | None = None
        if private:
            try:
                made = await self.signaling.create_room(room, private=True)
            except SignInError as exc:
                raise UIError(409, "refused", str(exc)) from None
        if room not in self.rooms:
            agent = await self._open(room)
            if made is not None:
                agent.server.describe(made)
            await self._settle(agent)
            self._save_rooms()
        self.push_rooms()
        return self.rooms[room].state()

    async def _settle(self, agent: Agent) -> None:
        """Wait briefly for the server's answer to a join from the UI: a refusal (a private
        room of others, a bad name) is reported and the room dropped; a server that does not
        answer in time leaves the room joined, to be entered once the server is back."""
        try:
            async with asyncio.timeout(JOIN_ANSWER_WAIT):
                await agent.client.settled.wait()
        except TimeoutError:
            return
        refusal = agent.client.refusal
        if refusal is not None:
            self.readers.forget(agent.room)
            del self.rooms[agent.room]
            self.unread.pop(agent.room, None)
            await agent.close()
            raise UIError(int(refusal.get("status") or 403), str(refusal.get("code") or "refused"),
                          str(refusal.get("message") or "the server refused the join"))

    async def direct(self, user: str) -> dict[str, Any]:
        """Open (or reopen) the direct-message room with `user`; its state."""
        try:
            room = await self.signaling.direct_room(user)
        except SignInError as exc:
            raise UIError(409, "refused", str(exc)) from None
        return await self.join(room)

    async def leave(self, name: str) -> dict[str, Any]:
        agent = self.room(name)
        self.readers.forget(name)
        del self.rooms[name]
        self.unread.pop(name, None)
        await agent.leave()
        self._save_rooms()
        self.push_rooms()
        return {"left": name}

    def mark_read(self, name: str) -> dict[str, Any]:
        self.room(name)
        self.store.mark_read(name)
        self.unread[name] = 0
        self.push_rooms()
        return {"room": name, "unread": 0}

    def shown(self, room: str, mine: bool) -> None:
        """A message was shown in `room`: one more unread unless it is ours, or a page is
        reading the room (then it is seen as it comes, and its read marker follows)."""
        if mine or room not in self.unread:
            return
        if self.readers.being_read(room):
            self.readers.seen(room)
            return
        self.unread[room] += 1
        self.push_rooms()

    def reading(self, page: Hashable, room: str | None) -> None:
        """`page` shows `room` in view from now on (None: no room, or the page is hidden).
        A room this device is not in is refused (UIError), and the page's room kept."""
        if room is not None:
            self.room(room)
        self.readers.read(page, room)

    def _read_as_seen(self, room: str) -> None:
        """Write the read marker of `room`, whose messages a page showed as they came: all it
        holds was seen, so nothing in it counts unread any more."""
        if room not in self.rooms:
            return
        self.store.mark_read(room)
        if self.unread.get(room):
            self.unread[room] = 0
            self.push_rooms()

    def push_rooms(self) -> None:
        """Push the rooms list (unread counts) to every open page: built once, as the next
        frame to the pages leaves, however many messages changed it (in the frame that
        carries them)."""
        self.ui.post_latest("rooms", self._rooms_event)

    def _rooms_event(self) -> dict[str, Any]:
        return {"type": "rooms", "rooms": self.rooms_list()}

    # -- the mesh ---------------------------------------------------------------------------

    def _rooms_of(self, device: str) -> list[Agent]:
        """The rooms that list `device`, in the order they were joined."""
        return [agent for agent in self.rooms.values() if device in agent.mesh.peers]

    def _room_for(self, device: str) -> str:
        """The room to signal `device` through: the first shared one (the first room at all
        if none lists it yet)."""
        shared = self._rooms_of(device)
        if shared:
            return shared[0].room
        return next(iter(self.rooms), "")

    async def _send_room_signal(self, room: str, to: str, kind: str,
                                payload: dict[str, Any]) -> None:
        agent = self.rooms.get(room) or next(iter(self._rooms_of(to)), None)
        if agent is not None:
            await agent.server.send_signal(to, kind, payload)

    def roster_changed(self) -> None:
        """A room's roster changed: link to every device any room lists."""
        union: dict[str, PeerInfo] = {}
        for agent in self.rooms.values():
            for device, info in agent.mesh.peers.items():
                union.setdefault(device, info)
        self.mesh.update_roster(union.values())

    def _on_frame(self, info: PeerInfo, text: str) -> None:
        """A frame from a data channel: parsed once, handed to its room if the sender is in
        it, refused otherwise."""
        arrived = time.perf_counter() if trace.ON else 0.0
        try:
            room, frame = parse_room_frame(text)
        except ProtocolError as exc:
            rooms = self._rooms_of(info.device)
            for listing in rooms:
                listing.refuse_unparsed(info, exc)
            if not rooms:
                self._refuse(info, f"{exc.code}: {exc}")
            return
        if trace.ON and isinstance(frame, MsgFrame):
            trace.mark(frame.env.id, "udp_in", trace.last_datagram)
            trace.mark(frame.env.id, "frame_in", arrived)
            trace.mark(frame.env.id, "parsed")
        target = self.rooms.get(room)
        if target is None:
            self._refuse(info, f"not_in_room: a frame for room {room!r}, which this device "
                         "is not in")
            return
        if info.device not in target.mesh.peers:
            self._hold(room, info, frame)
            return
        target.on_room_frame(info, frame)

    def _hold(self, room: str, info: PeerInfo, frame: Frame) -> None:
        """Keep a frame from a device the room does not list (yet), until the room admits it
        or EARLY_FRAME_HOLD passes."""
        key = (room, info.device)
        held = self._early.get(key)
        if held is None:
            held = self._early[key] = []
            asyncio.get_running_loop().call_later(EARLY_FRAME_HOLD, self._expire, key)
        if len(held) < EARLY_FRAMES_MAX:
            held.append((info, frame))
        else:
            self._refuse(info, f"not_in_room: too many frames for room {room!r} before it "
                         "lists the sender")

    def admitted(self, room: str, device: str) -> None:
        """The room now lists `device`: hand it the frames held for it, in order."""
        held = self._early.pop((room, device), None)
        agent = self.rooms.get(room)
        for info, frame in held or ():
            if agent is not None:
                agent.on_room_frame(info, frame)

    def _expire(self, key: tuple[str, str]) -> None:
        for info, frame in self._early.pop(key, None) or ():
            self._refuse(info, f"not_in_room: a {frame.t} frame for room {key[0]!r}, which "
                         f"has not listed the sender within {EARLY_FRAME_HOLD:g} s")

    def _refuse(self, info: PeerInfo, reason: str) -> None:
        rooms = self._rooms_of(info.device)
        if rooms:
            for agent in rooms:
                agent.refuse_frame(info.user, info.device, reason)
        else:
            self.refused[reason.split(":", 1)[0]] += 1
            log.warning("refused a frame from %s (%s): %s", info.user, info.device, reason)

    def _on_link(self, info: PeerInfo, state: LinkState) -> None:
        for agent in self._rooms_of(info.device):
            agent.on_peer_link(info, state)

    def _on_refused(self, device: str, reason: str) -> None:
        rooms = self._rooms_of(device) or list(self.rooms.values())[:1]
        for agent in rooms:
            agent.server.on_signal_refused(device, reason)

    # -- the UI's backend (ui.ChatBackend) --------------------------------------------------

    def state(self, room: str | None = None) -> dict[str, Any]:
        if not self.rooms and room is None:
            return {"user": self.user, "device": self.key.device_id, "room": None,
                    "started_at": self.started_at, "rooms": []}
        return self.room(room).state()

    def messages_page(self, room: str | None, before: str | None,
                      limit: int) -> dict[str, Any]:
        return self.room(room).messages_page(before, limit)

    async def post_message(self, room: str | None, text: str) -> dict[str, Any]:
        return await self.room(room).post_message(text)

    def events(self, room: str | None, limit: int) -> dict[str, Any]:
        return ui_state.events(self.room(room), limit)

    def note(self, room: str | None, text: str) -> dict[str, Any]:
        return ui_state.note(self.room(room), text)

    def message_path(self, room: str | None, message_id: str) -> dict[str, Any]:
        return ui_state.message_path(self.room(room), message_id)

    def links(self) -> dict[str, Any]:
        """Every link of the device, with the rooms it carries."""
        return {"links": [
            {"user": link.peer.user, "device": device, "state": link.state.value,
             "rtt_ms": link.rtt_ms, "attempts": link.attempts, "connect_ms": link.connect_ms,
             "rooms": [a.room for a in self._rooms_of(device)]}
            for device, link in sorted(self.mesh.links.items())]}

