"""The agent: wires the server link, the mesh, the local log, the outbox and the UI together.

Rules it keeps: a message is stored locally before it is shown or sent; every received
envelope is verified against a key the server vouched for before it is stored, shown or
passed on; the server is told about every message it lacks, by whoever holds it.

Presence and liveness are different facts. The server's roster says who is connected to the
server; a link's pings say whether a peer is alive. A peer the server says has left keeps its
link while the link's data channel is open (only its server connection may have broken); once
the link fails, a peer the server does not list is dropped. While the server is unreachable
nothing is dropped: failed links keep retrying, their offers and answers relayed by peers
(`relay.py`), and an agent with no live link knocks at a cached peer's rendezvous address
(`rendezvous.py`) to get back into the mesh."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from protocol import (
    MAX_BATCH,
    DeviceKey,
    Envelope,
    ProtocolError,
    VersionVector,
    check_lamport_horizon,
    encode_frame,
    parse_frame,
)
from protocol.catchup import SYNC_INTERVAL, CatchUp, Effect, Pull, PullServer, SendDigest
from protocol.links import (
    MAX_LINKS,
    LinkReport,
    LinksFrame,
    is_links_frame,
    parse_links_frame,
)
from protocol.paging import order_token, parse_order_token
from protocol.relay import Sender, SignalFrame, is_signal_frame, parse_signal_frame
from protocol.rendezvous import is_address
from protocol.sync import (
    BatchFrame,
    DigestFrame,
    KeysFrame,
    MsgFrame,
    VectorFrame,
    batches_for,
    keys_frames_for,
    parse_sync_frame,
)
from protocol.vector import vector_digest

from .log import LocalLog
from .mesh import Link, LinkState, Mesh, PeerInfo
from .outbox import Outbox
from .records import NOTE_MAX_CHARS, PathJournal, Timeline
from .relay import SignalRelay
from .rendezvous import Rendezvous
from .roster import RosterCache
from .signaling_client import RECONNECT_MAX, Credentials, SignalingClient, SignInError
from .ui import ChatUI, UIError

log = logging.getLogger("gibberish.agent")

KEY_FILE = "device.key"
SESSION_FILE = "session.json"
LOG_FILE = "log.sqlite3"
ROSTER_FILE = "peers.json"

# With the server unreachable, a link down this long while other links work is dialled
# directly at the peer's rendezvous address: no relay has reached it.
DIRECT_DIAL_AFTER = 8.0
# How long a restart with a kept session waits for the server to sign it in.
SIGN_IN_TIMEOUT = 5.0
# Rendezvous attempts while the server is unreachable: first after about half a second,
# doubling to at most this, with jitter.
DIAL_INTERVAL_MAX = 5.0
# How often each agent tells its linked peers about its data channels (and on every change),
# for their network views.
LINKS_REPORT_INTERVAL = 5.0


@dataclass
class AgentConfig:
    server_url: str
    username: str
    room: str
    data_dir: Path
    password: str | None = None
    register: bool = False
    ui_host: str = "127.0.0.1"
    ui_port: int = 0
    ice_hosts: list[str] | None = None
    rendezvous_host: str | None = "127.0.0.1"
    rendezvous_port: int = 0
    sync_interval: float = SYNC_INTERVAL
    reconnect_max: float = RECONNECT_MAX


@dataclass
class Delivery:
    """Which peers acknowledged a message, and whether the server stored it."""

    peers: set[str] = field(default_factory=set)
    server: bool = False


def server_address(url: str) -> tuple[str, int] | None:
    """The signaling server's host and port, from its URL (None if the URL has no host)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def load_or_create_key(data_dir: Path) -> DeviceKey:
    """The device key, made on first start and kept in the data dir with mode 0600."""
    path = data_dir / KEY_FILE
    if path.exists():
        return DeviceKey.from_private_bytes(path.read_bytes())
    key = DeviceKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes())
    return key


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Agent:
    """One user's device in one room."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = load_or_create_key(config.data_dir)
        self.room = config.room
        self.user = config.username
        self.store = LocalLog(config.data_dir / LOG_FILE)
        self.roster: dict[str, PeerInfo] = {}
        self.present: set[str] = set()
        self.known = RosterCache(config.data_dir / ROSTER_FILE, self.room)
        self.delivery: dict[str, Delivery] = {}
        self.refused: Counter[str] = Counter()
        self.client = SignalingClient(
            config.server_url, self.room, self.key,
            on_joined=self._on_joined, on_peer_joined=self._on_peer_joined,
            on_peer_left=self._on_peer_left, on_signal=self._on_signal,
            on_stored=self._on_stored, on_link=self._on_server_link,
            reconnect_max=config.reconnect_max,
        )
        self.mesh: Mesh | None = None
        self.outbox = Outbox(self.store, self.client, self.room, on_uploaded=self._on_own_upload)
        self.ui = ChatUI(self, config.ui_host, config.ui_port)
        # What this device saw happen, for the network view (docs/network-view.md).
        self.timeline = Timeline(self._publish_event)
        self.paths = PathJournal(self.store, self.room)
        self._server_up: bool | None = None
        self._started_at = int(time.time() * 1000)  # tells a page that the process changed
        self._link_states: dict[str, str] = {}
        # What each linked peer last reported of its own data channels (protocol/links.py).
        self.reported: dict[str, tuple[LinkReport, ...]] = {}
        self.rendezvous: Rendezvous | None = None  # made once signed in (the name is known)
        self.relay = SignalRelay(self.key.device_id, send_direct=self._send_direct,
                                 neighbours=self._neighbours)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._key_refresh: asyncio.Task[None] | None = None
        self._down_since: dict[str, float] = {}
        # Devices whose last signal found no path at all: their offer went nowhere.
        self._unrouted: set[str] = set()
        self._hello_sent: dict[str, float] = {}
        self._ice_refresh: asyncio.Task[None] | None = None


        # What to pull, from whom and when (protocol/catchup.py); woken when it may be due sooner.
        self.catchup = CatchUp(interval=config.sync_interval)
        self._catchup_wake = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._sign_in()
        self.mesh = Mesh(
            key=self.key, user=self.user, room=self.room, send_signal=self._send_signal,
            on_frame=self._on_frame, on_link=self._on_peer_link,
            on_refused=self._on_signal_refused, ice_servers=[],
        )
        if self.config.rendezvous_host is not None:
            self.rendezvous = Rendezvous(
                key=self.key, user=self.user, room=self.room,
                host=self.config.rendezvous_host, port=self.config.rendezvous_port,
                vouched=self._vouched_peer, on_frame=self._on_path_frame,
                on_session=self._on_rendezvous_session,
                server=server_address(self.config.server_url))
            self.client.rendezvous = await self.rendezvous.start()
        await self.ui.start()
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
        self._spawn(self._keep_in_reach())
        self._spawn(self._report_links_forever())
        self._spawn(self._catch_up_forever())
        log.info("%s's agent for #%s: UI on %s, rendezvous on %s", self.user, self.room,
                 self.ui.url, self.rendezvous.address if self.rendezvous else "(none)")

    async def _sign_in(self) -> None:
        session_path = self.config.data_dir / SESSION_FILE
        cached = json.loads(session_path.read_text()) if session_path.exists() else None
        password = self.config.password
        if password is not None:
            try:
                # With a session kept from last time, a server that does not answer quickly
                # (frozen, overloaded) is not waited for: the kept session will do.
                async with asyncio.timeout(SIGN_IN_TIMEOUT if cached is not None else None):
                    self.user = await self.client.sign_in(
                        Credentials(self.config.username, password),
                        register=self.config.register)
                _write_private(session_path, json.dumps({
                    "server": self.config.server_url, "token": self.client.token,
                    "username": self.user}))
                return
            except SignInError:
                raise
            except (OSError, aiohttp.ClientError) as exc:
                # The server is unreachable (or died mid-request): fall back to the kept token.
                if cached is None:
                    raise SignInError(f"cannot reach the server to sign in: {exc}") from exc
                log.warning("server unreachable (%s); using the session kept from last time", exc)
        if cached is None:
            raise SignInError("no password given and no session kept in the data dir")
        self.client.use_token(cached["token"], cached["username"])
        self.user = cached["username"]

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.rendezvous is not None:
            await self.rendezvous.close()
        await self.outbox.close()
        await self.client.close()
        if self.mesh is not None:
            await self.mesh.close()
        await self.ui.close()
        await self.paths.close()
        self.store.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the server -------------------------------------------------------------------------

    async def _send_signal(self, to: str, kind: str, payload: dict[str, Any]) -> None:
        """Signal through the server; when it cannot (down, frozen, or `to` is not connected to
        it), through the peers."""
        if self.client.joined and await self.client.signal(to, kind, payload):
            self._unrouted.discard(to)
            return
        if self.relay.send(to, kind, payload):
            self._unrouted.discard(to)
        else:
            self._unrouted.add(to)

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
        self._push_state()

    async def _on_joined(self, reply: dict[str, Any]) -> None:
        assert self.mesh is not None
        self.mesh.ice_servers = list(reply.get("ice_servers") or [])
        self._refresh_ice_servers_later(reply.get("ice_ttl"))
        # The server's roster is who is present now; a peer whose data channel is still open
        # stays even if the server (just restarted) does not list it yet.
        links = self.mesh.links
        self.roster = {d: p for d, p in self.roster.items()
                       if d in links and links[d].state == LinkState.CONNECTED}
        self.present = set()
        for peer in reply.get("peers", []):
            self._add_from_server(peer)
        self.known.save()
        self.mesh.update_roster(self.roster.values())
        for device in self.roster:
            # Offers made before the join (from the cached roster, with no path) went nowhere.
            self.mesh.nudge(device, force=device in self._unrouted)
        self._push_state()
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
            if self.mesh is not None:
                self.mesh.ice_servers = servers
            if ttl is None:
                return
            delay = ttl / 2

    def _add_from_server(self, peer: dict[str, Any]) -> PeerInfo | None:
        """Take a roster entry from the server: the mesh links to it, its key is vouched for,
        and the roster cache remembers it with its rendezvous address."""
        info = PeerInfo(user=peer["user"], device=peer["device"], public_key=peer["public_key"])
        if info.device == self.key.device_id:
            return None
        self.roster[info.device] = info
        self.present.add(info.device)
        self.store.remember_key(info.device, info.user, info.public_key, "server")
        self.known.remember(info, peer.get("rendezvous"), int(time.time() * 1000))
        return info

    async def _on_peer_joined(self, data: dict[str, Any]) -> None:
        assert self.mesh is not None
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
        self._push_state()

    async def _on_peer_left(self, data: dict[str, Any]) -> None:
        assert self.mesh is not None
        device = data["device"]
        self.present.discard(device)
        peer = self.roster.get(device)
        user = peer.user if peer is not None else "?"
        self.timeline.add("left", f"{user} left the server (device {device[:8]})",
                          user=user, device=device)
        link = self.mesh.links.get(device)
        if link is not None and link.state == LinkState.CONNECTED:
            # Only its server connection may be gone: the pings will tell if the peer is.
            log.info("the server says %s left; its data channel is open, so it stays", device[:8])
        else:
            self._drop_peer(device)
        self._push_state()

    def _drop_peer(self, device: str) -> None:
        self.reported.pop(device, None)
        if self.mesh is not None:
            self.roster.pop(device, None)
            self._down_since.pop(device, None)
            self.mesh.peer_left(device)

    def _drop_if_gone(self, device: str) -> None:
        """Drop a peer whose link failed if the server, reachable, does not list it."""
        link = self.mesh.links.get(device) if self.mesh is not None else None
        if (link is not None and link.state != LinkState.CONNECTED and self.client.joined
                and device not in self.present):
            log.info("link to %s failed and the server does not list it: dropped", device[:8])
            self._drop_peer(device)
            self._push_state()

    async def _on_signal(self, data: dict[str, Any]) -> None:
        assert self.mesh is not None
        sender = data.get("from") or {}
        if sender.get("device") not in self.roster and sender.get("public_key"):
            # An offer can overtake the peer_joined that announces its sender; the server
            # vouches for the sender's key in the signal itself.
            self._add_from_server(sender)
            self.mesh.update_roster(self.roster.values())
        await self.mesh.handle_signal(sender.get("user", ""), sender.get("device", ""),
                                      str(data.get("kind")), data.get("payload") or {})

    def _on_signal_refused(self, device: str, reason: str) -> None:
        """A forged, malformed or unexpected offer, answer or candidate: counted and shown like
        every other refusal."""
        peer = self.roster.get(device)
        user = peer.user if peer is not None else f"device {device[:8]}"
        self.refused["signal_refused"] += 1
        self.timeline.add("refused", f"refused a signal from {user}: {reason[:200]}",
                          user=user, device=device, reason=f"signal refused: {reason[:200]}")

    # -- peers, without the server ----------------------------------------------------------

    def _vouched_peer(self, device: str) -> PeerInfo | None:
        vouched = self.store.vouched_key(device)
        return None if vouched is None else PeerInfo(vouched[0], device, vouched[1])

    def _send_direct(self, device: str, text: str) -> bool:
        """Send a frame to a neighbour: its rendezvous session if any, else its data channel."""
        if self.rendezvous is not None and self.rendezvous.send(device, text):
            return True
        return self.mesh is not None and self.mesh.send(device, text)

    def _neighbours(self) -> list[str]:
        """Devices with a direct path: a rendezvous session or an open data channel."""
        devices = set(self.rendezvous.sessions) if self.rendezvous is not None else set()
        if self.mesh is not None:
            devices |= {d for d, link in self.mesh.links.items()
                        if link.state == LinkState.CONNECTED}
        return sorted(devices)

    def _on_path_frame(self, via: PeerInfo, text: str) -> None:
        """A frame from a rendezvous session: only relay frames travel there."""
        try:
            frame = parse_signal_frame(text)
        except ProtocolError as exc:
            self._refuse(via, str(exc))
            return
        self._on_relay_frame(via, frame)

    def _on_relay_frame(self, via: PeerInfo, frame: SignalFrame) -> None:
        mine = self.relay.receive(Sender(via.user, via.device), frame)
        if mine is not None and mine.sender is not None:
            self._spawn(self._on_relayed_signal(mine.sender, mine.kind, mine.payload))

    async def _on_relayed_signal(self, sender: Sender, kind: str,
                                 payload: dict[str, Any]) -> None:
        """A signal that came through a peer (or a rendezvous session) rather than the server.

        A sender the mesh does not know is taken in only if the server once vouched for its
        key (it may have restarted while the server is down)."""
        if self.mesh is None or sender.device == self.key.device_id:
            return
        if sender.device not in self.roster:
            info = self._vouched_peer(sender.device)
            if info is None or info.user != sender.user:
                self.refused["unknown_sender"] += 1
                log.warning("relayed %s from unknown device %s refused", kind, sender.device[:8])
                self.timeline.add(
                    "refused", f"refused a relayed {kind} from unknown device "
                    f"{sender.device[:8]}", reason="unknown_sender")
                return
            self.roster[info.device] = info
            self.mesh.update_roster(self.roster.values())
            self._push_state()
        if kind == "hello":
            address = payload.get("rendezvous")
            if isinstance(address, str) and self.known.set_address(sender.device, address):
                self.known.save()
            # It has no link to us: an offer of ours under way went to its previous process,
            # and a link we think open leads there too.
            self.mesh.nudge(sender.device, force=True)
            self.mesh.probe(sender.device)
            return
        await self.mesh.handle_signal(sender.user, sender.device, kind, payload)

    def _on_rendezvous_session(self, peer: PeerInfo, up: bool, address: str) -> None:
        self.timeline.add(
            "rendezvous", f"rendezvous session with {peer.user} {'open' if up else 'closed'}",
            user=peer.user, device=peer.device, state="open" if up else "closed")
        if up:
            if address and is_address(address) and self.known.set_address(peer.device, address):
                self.known.save()
            self._on_new_path()
        self._push_state()

    def _on_new_path(self) -> None:
        """A neighbour appeared while links are down: offer where this side offers, and say
        hello where it waits for an offer, so the other side offers now."""
        if self.mesh is None:
            return
        now = time.monotonic()
        address = self.rendezvous.address if self.rendezvous is not None else None
        for device, link in self.mesh.links.items():
            if link.state == LinkState.CONNECTED:
                continue
            if link.offerer:
                self.mesh.nudge(device, force=device in self._unrouted)
            elif now - self._hello_sent.get(device, 0.0) > 1.0:
                # "hello" is a relay-only kind: the server carries offers, answers and
                # candidates, and announces arrivals itself (peer_joined).
                self._hello_sent[device] = now
                self.relay.send(device, "hello", {"rendezvous": address or ""})

    async def _keep_in_reach(self) -> None:
        """While the server is unreachable, keep a way into the mesh: an agent with no live
        link and no rendezvous session dials the cached peers' rendezvous addresses until one
        answers; a link that stays down while others work is dialled directly."""
        delay = 0.5
        while True:
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            if self.client.joined or self.rendezvous is None or self.mesh is None:
                delay = 0.5
                continue
            if await self._dial_someone():
                delay = 0.5
            else:
                delay = min(DIAL_INTERVAL_MAX, delay * 2)

    async def _dial_someone(self) -> bool:
        assert self.rendezvous is not None and self.mesh is not None
        sessions = self.rendezvous.sessions
        links = self.mesh.links
        if not sessions and all(link.state != LinkState.CONNECTED for link in links.values()):
            for known in self.known.peers():
                if known.device != self.key.device_id and known.rendezvous and (
                        await self.rendezvous.dial(known.rendezvous, known.info)):
                    return True
            return False
        now = time.monotonic()
        for device, link in links.items():
            peer = self.known.get(device)
            if (link.state == LinkState.CONNECTED or device in sessions or peer is None
                    or not peer.rendezvous
                    or now - self._down_since.get(device, now) < DIRECT_DIAL_AFTER):
                continue
            if await self.rendezvous.dial(peer.rendezvous, peer.info):
                return True
        return False

    async def _on_stored(self, data: dict[str, Any]) -> None:
        ids = {m["id"]: int(m["cursor"]) for m in data.get("messages", [])
               if isinstance(m, dict) and "id" in m and "cursor" in m}
        self.store.mark_known_by_server(self.room, ids)
        for message_id, cursor in ids.items():
            self.paths.record(message_id, "on_server", cursor=cursor,
                              text=f"the server stored it at cursor {cursor}")
        self._on_uploaded(ids)
        # Ids this device lacks are read from the server's history soon, unless a peer brings
        # them first.
        self.catchup.server_named(ids, self.store.vector(self.room), time.monotonic())
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
        self._on_uploaded(ids)

    def _on_uploaded(self, ids: dict[str, int]) -> None:
        for message_id in ids:
            self.delivery.setdefault(message_id, Delivery()).server = True
            self._push_delivery(message_id)
        self._push_state()

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
            envelopes: list[Envelope] = []
            cursors: dict[str, int] = {}
            for row in rows:
                raw = {k: row[k] for k in ("room", "author", "device", "seq", "lamport", "ts",
                                          "text", "sig")}
                env = self._verified(raw, "server")
                if env is not None:
                    envelopes.append(env)
                    cursors[env.id] = int(row["cursor"])
            fresh = self.store.add_many(envelopes, "server")
            for env in fresh:
                self.paths.record(env.id, "received", via="server", cursor=cursors[env.id],
                                  text=f"received via the server: read from its history "
                                       f"(cursor {cursors[env.id]})")
                self._announce(env)
            self._fresh(None, fresh)
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

    def _on_peer_link(self, peer: PeerInfo, state: LinkState) -> None:
        if self._link_states.get(peer.device) != state.value:
            self._link_states[peer.device] = state.value
            link = self.mesh.links.get(peer.device) if self.mesh is not None else None
            self.timeline.add("link", f"data channel to {peer.user} {state.value}",
                              user=peer.user, device=peer.device, state=state.value,
                              rtt_ms=link.rtt_ms if link is not None else None)
        if state != LinkState.CONNECTED:
            self.reported.pop(peer.device, None)  # its report came over that channel
        self._report_links()
        if state == LinkState.CONNECTED:
            self._down_since.pop(peer.device, None)
            if self.mesh is not None:
                self._apply(self.catchup.link_up(peer.device, time.monotonic()))
                self._catchup_wake.set()
                self._send_keys(peer.device)
                if not self.client.joined:
                    self._on_new_path()
        else:
            self.catchup.link_down(peer.device)
            self._down_since.setdefault(peer.device, time.monotonic())
        if state in (LinkState.FAILED, LinkState.DISCONNECTED):
            # A peer neither answering nor listed by the server is gone: no need to wait out
            # the grace a disconnected link gets. Not from inside the mesh's own callback:
            # it is still updating the link.
            asyncio.get_running_loop().call_soon(self._drop_if_gone, peer.device)
        self._push_state()

    def _send_to(self, device: str, frame: Any) -> None:
        if self.mesh is not None:
            self.mesh.send(device, frame.encode())

    def _send_keys(self, device: str) -> None:
        if self.mesh is not None:
            for frame in keys_frames_for(self.store.known_keys()):
                self.mesh.send(device, frame)

    def _on_frame(self, peer: PeerInfo, text: str) -> None:
        try:
            raw = parse_frame(text)
            if isinstance(raw, dict) and raw.get("t") == "ack":
                self._on_ack(peer, raw)
                return
            if is_signal_frame(raw):
                assert isinstance(raw, dict)
                self._on_relay_frame(peer, parse_signal_frame(raw))
                return
            if is_links_frame(raw):
                self._on_links_report(peer, parse_links_frame(raw).links)
                return
            frame = parse_sync_frame(text)
        except ProtocolError as exc:
            self._refuse(peer, str(exc))
            return
        if isinstance(frame, MsgFrame):
            self._receive([frame.env], peer, live=True)
        elif isinstance(frame, BatchFrame):
            self._receive(frame.envs, peer, live=False)
            if not frame.more:
                self._apply(self.catchup.answer_ended(peer.device, time.monotonic()))
        elif isinstance(frame, VectorFrame):
            self._send_missing(peer.device, frame.vector)
            self._apply(self.catchup.vector_received(
                peer.device, frame.vector, self.store.vector(self.room), time.monotonic()))
        elif isinstance(frame, DigestFrame):
            ours = vector_digest(self.store.vector(self.room))
            self._apply(self.catchup.digest_received(peer.device, frame.digest, ours,
                                                     time.monotonic()))
        elif isinstance(frame, KeysFrame):
            for k in frame.devices:
                if self.store.key_for(k.id) is None:
                    self.store.remember_key(k.id, k.user, k.public_key, f"peer:{peer.device}")

    def _on_links_report(self, peer: PeerInfo, links: tuple[LinkReport, ...]) -> None:
        if self.reported.get(peer.device) != links:
            self.reported[peer.device] = links
            self._push_state()

    def _report_links(self) -> None:
        """Tell the linked peers which data channels this device has, with their RTTs."""
        if self.mesh is None:
            return
        links = tuple(LinkReport(device, link.state.value, link.rtt_ms)
                      for device, link in sorted(self.mesh.links.items())[:MAX_LINKS])
        self.mesh.broadcast(LinksFrame(links).encode())

    async def _report_links_forever(self) -> None:
        while True:
            await asyncio.sleep(LINKS_REPORT_INTERVAL)
            self._report_links()

    def _refuse(self, peer: PeerInfo, reason: str) -> None:
        self.refused[reason.split(":", 1)[0]] += 1
        log.warning("refused a frame from %s (%s): %s", peer.user, peer.device, reason)
        self.timeline.add("refused", f"refused a frame from {peer.user}: {reason[:200]}",
                          user=peer.user, device=peer.device, reason=reason[:200])

    def _on_ack(self, peer: PeerInfo, raw: dict[str, Any]) -> None:
        ids = raw.get("ids")
        if not isinstance(ids, list):
            return
        for message_id in ids[:200]:
            delivery = self.delivery.get(message_id) if isinstance(message_id, str) else None
            if delivery is not None and peer.device not in delivery.peers:
                delivery.peers.add(peer.device)
                self.paths.record(message_id, "acked", user=peer.user, device=peer.device,
                                  text=f"{peer.user} stored it (receipt)")
                self._push_delivery(message_id)

    def _verified(self, raw: Any, origin: str) -> Envelope | None:
        try:
            env = raw if isinstance(raw, Envelope) else Envelope.from_dict(raw)
            if env.room != self.room:
                raise ProtocolError(f"message for room {env.room!r}, not {self.room!r}")
            known = self.store.key_for(env.device)
            if known is None:
                self._schedule_key_refresh()
                raise ProtocolError(f"unknown device {env.device}; keys are being refreshed")
            user, public_key = known
            if user != env.author:
                raise ProtocolError(f"device {env.device} belongs to {user!r}, not {env.author!r}")
            env.verify(public_key)
            check_lamport_horizon(env, int(time.time() * 1000))
            return env
        except ProtocolError as exc:
            self.refused[type(exc).__name__] += 1
            log.warning("refused a message from %s: %s", origin, exc)
            self.timeline.add("refused", f"refused a message from {origin}: {str(exc)[:200]}",
                              reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            return None

    def _schedule_key_refresh(self) -> None:
        if self._key_refresh is None or self._key_refresh.done():
            self._key_refresh = asyncio.ensure_future(self._refresh_keys())

    def _receive(self, envelopes: Sequence[Envelope], peer: PeerInfo, live: bool) -> None:
        good = [e for e in (self._verified(e, f"peer {peer.user}") for e in envelopes) if e]
        try:
            fresh = self.store.add_many(good, f"peer:{peer.device}")
        except ProtocolError as exc:
            self._refuse(peer, str(exc))
            return
        if good:
            self._send_to(peer.device, _Ack([e.id for e in good]))
        if live and len(fresh) < len(good):
            # A live message is sent once, by its author, on each channel: one held already
            # was replayed. Ignored (the log keeps one copy), and said.
            held = next(e for e in good if e not in fresh)
            self.timeline.add(
                "refused", f"ignored a replayed message from {peer.user}: {held.id} is "
                f"already held", user=peer.user, device=peer.device,
                reason=f"replayed: {held.id} already held")
        via = "channel" if live else "sync"
        for env in fresh:
            self.paths.record(env.id, "received", via=via, user=peer.user, device=peer.device,
                              text=_received_text(env, peer, live))
            self._announce(env)
        self._fresh(peer.device, fresh)
        if not live:
            # An empty batch ends every exchange of version vectors: nothing was missing.
            text = (f"sync batch from {peer.user}: {len(envelopes)} messages, {len(fresh)} new"
                    if envelopes else f"in sync with {peer.user}: nothing missing")
            self.timeline.add("sync", text, user=peer.user, device=peer.device,
                              count=len(envelopes), fresh=len(fresh))
        if fresh:
            self.outbox.wake()
        if live and self.store.gaps(self.room):
            # A gap: a message was missed; ask this peer for what we lack.
            self._apply(self.catchup.gap_seen(peer.device, time.monotonic()))

    def _fresh(self, source: str | None, fresh: Sequence[Envelope]) -> None:
        """Fresh messages arrived: linked peers that may lack them get our digest soon."""
        if not fresh:
            return
        reports = {device: frozenset(r.device for r in links if r.state == "connected")
                   for device, links in self.reported.items()}
        self.catchup.fresh(source, {env.device for env in fresh}, reports, time.monotonic())
        self._catchup_wake.set()

    def _apply(self, effects: Sequence[Effect]) -> None:
        """Carry out what the catch-up rules decided: digests, pulls, a read of the server."""
        digest: str | None = None
        for effect in effects:
            if isinstance(effect, SendDigest):
                digest = digest or vector_digest(self.store.vector(self.room))
                self._send_to(effect.device, DigestFrame(digest))
            elif isinstance(effect, Pull):
                self._send_to(effect.device, VectorFrame(self.store.vector(self.room)))
            elif isinstance(effect, PullServer):
                self._spawn(self._pull_from_server())

    async def _pull_from_server(self) -> None:
        try:
            await self._catch_up_from_server()
        finally:
            self.catchup.server_pull_ended()
            self._catchup_wake.set()

    async def _catch_up_forever(self) -> None:
        """Send what the clock made due (digests, a read of the server), then sleep until the
        next thing is due or new input may have made something due sooner."""
        while True:
            self._catchup_wake.clear()
            self._apply(self.catchup.due(time.monotonic(), self.store.vector(self.room),
                                         self.client.joined))
            next_at = self.catchup.next_due()
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
        while self.mesh is not None:
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
        self.delivery[env.id] = Delivery()
        self.paths.record(env.id, "authored", at=env.ts, text=f"written here by {env.author}")
        sent = self.mesh.broadcast(MsgFrame(env).encode()) if self.mesh is not None else []
        peers = [{"user": self.roster[d].user if d in self.roster else d[:8], "device": d}
                 for d in sent]
        self.paths.record(
            env.id, "sent", via="channel", peers=peers,
            text=("sent on the data channels to " + ", ".join(p["user"] for p in peers))
            if peers else "no data channel open: sent to no peer (sync will carry it)")
        self.outbox.wake()
        message = self._message_dict(env)
        self._spawn(self.ui.publish({"type": "message", "message": message}))
        self._push_state()
        return message

    def _announce(self, env: Envelope) -> None:
        self._spawn(self.ui.publish({"type": "message", "message": self._message_dict(env)}))

    def _message_dict(self, env: Envelope) -> dict[str, Any]:
        return {
            "id": env.id, "author": env.author, "device": env.device, "seq": env.seq,
            "lamport": env.lamport, "ts": env.ts, "text": env.text,
            "mine": env.device == self.key.device_id,
            "delivery": self._delivery_dict(env),
        }

    def _delivery_dict(self, env: Envelope) -> dict[str, Any] | None:
        if env.device != self.key.device_id:
            return None
        d = self.delivery.get(env.id)
        on_server = (d.server if d else False) or self.store.on_server(self.room, env.id)
        reached = len(d.peers) if d else 0
        return {"peers_reached": reached, "peers_total": len(self.roster), "server": on_server}

    def _push_delivery(self, message_id: str) -> None:
        env = self.store.get(self.room, message_id)
        if env is not None and env.device == self.key.device_id:
            self._spawn(self.ui.publish({"type": "delivery", "id": message_id,
                                         "delivery": self._delivery_dict(env)}))

    def _push_state(self) -> None:
        self._spawn(self.ui.publish({"type": "state", "state": self.state()}))

    def state(self) -> dict[str, Any]:
        links = self.mesh.links if self.mesh is not None else {}
        peers = []
        for device, info in sorted(self.roster.items(), key=lambda kv: kv[1].user):
            link = links.get(device)
            peers.append({
                "user": info.user, "device": device,
                "state": link.state.value if link else LinkState.CONNECTING.value,
                "rtt_ms": link.rtt_ms if link else None,
                "path": _path_dict(link),
                "connect_ms": link.connect_ms if link else None,
                "on_server": device in self.present,
                "links": [report.to_dict() for report in self.reported.get(device, ())],
            })
        # Devices of the room known from earlier rosters that are neither linked nor listed
        # by the server now: gone, or not back yet.
        offline = [{"user": k.user, "device": k.device}
                   for k in sorted(self.known.peers(), key=lambda k: (k.user, k.device))
                   if k.device not in self.roster and k.device != self.key.device_id]
        if self.client.joined:
            server_state = "connected"
        else:
            server_state = "down" if self.client.unreachable else "connecting"
        return {
            "user": self.user, "device": self.key.device_id, "room": self.room,
            "started_at": self._started_at,
            "server": {"url": self.config.server_url, "connected": self.client.joined,
                       "state": server_state, "outbox": self.outbox.pending()},
            "rendezvous": {
                "address": self.rendezvous.address if self.rendezvous else None,
                "sessions": sorted(self.rendezvous.sessions) if self.rendezvous else [],
                "relayed": self.relay.forwarded,
                "refused": self.rendezvous.refused if self.rendezvous else 0,
                "dials_refused": self.rendezvous.dials_refused if self.rendezvous else 0,
            },
            "peers": peers,
            "offline": offline,
            "refused": dict(self.refused),
        }

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
        self._spawn(self.ui.publish({"type": "event", "event": event}))

    def messages_page(self, before: str | None, limit: int) -> dict[str, Any]:
        key = parse_order_token(before)
        if before and key is None:
            raise UIError(400, "invalid_argument", "before must be a page token lamport.device.seq")
        rows = self.store.page(self.room, key, limit + 1)
        more = len(rows) > limit
        rows = rows[-limit:]
        older = order_token(rows[0].order_key) if more and rows else None
        return {"messages": [self._message_dict(e) for e in rows], "older": older}


def _path_dict(link: Link | None) -> dict[str, Any] | None:
    """Which way an open link goes (protocol.links.LinkPath), or None without one."""
    path = link.path if link is not None else None
    return path.to_dict() if path is not None else None


def _received_text(env: Envelope, peer: PeerInfo, live: bool) -> str:
    """How a message came, for its path: from its author, or passed on by another peer."""
    if live:
        return f"received from {peer.user} live on the data channel"
    if env.device == peer.device:
        return f"received from {peer.user} by anti-entropy (sync batch)"
    return (f"received via {peer.user}: {env.author}'s message, passed on by anti-entropy "
            f"(sync batch)")


@dataclass(frozen=True)
class _Ack:
    """A receipt: the ids a peer stored. Ephemeral, never logged."""

    ids: list[str]

    def encode(self) -> str:
        return encode_frame({"t": "ack", "ids": self.ids})
