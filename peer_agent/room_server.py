"""One room's server link: the room as the server sees it (join, roster, members, signals,
`stored` notices), the keys and ICE servers it hands out, and the room's history read from
it. Offers, answers and candidates go through the server, or through the peers when it cannot
carry them (`reach.py`, `relay.py`)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from protocol import BadSignature, verify_envelopes
from protocol.roster import kept_on_join

from .mesh import LinkState, PeerInfo
from .room_core import PendingChecks, RoomEffect, Store
from .room_signaling import RoomSignaling
from .signaling_client import SignInError
from .ui import Coalesced

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger("gibberish.agent")

STORED_INTERVAL = 0.05
"""Seconds between two takings of the server's `stored` notices, at most: the server sends one
per message it stores, and each was a commit of its marks; those of the window share one. The
first after a quiet spell is taken at the end of its loop turn."""


class RoomServer:
    """The room's link to the server, for one `Agent` (its `client`, the room on the device's
    one Socket.IO connection, is the agent's)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._learned: dict[str, int] = {}  # device -> the join generation it was learned in
        self._server_up: bool | None = None
        self._key_refresh: asyncio.Task[None] | None = None
        self._ice_refresh: asyncio.Task[None] | None = None
        self._stored: dict[str, int] = {}  # ids the server said it stored, not taken yet
        self._take_stored_soon = Coalesced(self.take_stored, STORED_INTERVAL)
        self.client = RoomSignaling(
            agent.device.signaling, agent.room,
            on_joined=self._on_joined, on_peer_joined=self._on_peer_joined,
            on_peer_left=self._on_peer_left, on_signal=self._on_signal,
            on_stored=self._on_stored, on_link=self._on_server_link,
            on_members=self._on_members, on_removed=self._on_removed,
        )

    def refresh_keys_soon(self) -> None:
        """Read the room's keys from the server, unless a read is already under way."""
        if self._key_refresh is None or self._key_refresh.done():
            self._key_refresh = self.agent.spawn(self.refresh_keys())

    async def send_signal(self, to: str, kind: str, payload: dict[str, Any]) -> None:
        """Signal through the server; when it cannot (down, frozen, or `to` is not connected to
        it), through the peers."""
        if self.agent.client.joined and await self.agent.client.signal(to, kind, payload):
            self.agent.reach.unrouted.discard(to)
            return
        if self.agent.relay.send(to, kind, payload):
            self.agent.reach.unrouted.discard(to)
        else:
            self.agent.reach.unrouted.add(to)

    def _on_server_link(self, up: bool) -> None:
        if up:
            self.agent.outbox.wake()
        if up != self._server_up:
            if up:
                text = "server link up" if self._server_up is None else "server back: link up"
            else:
                text = "server lost" if self._server_up else "cannot reach the server"
            self.agent.timeline.add("server", text, state="connected" if up else "down")
            self._server_up = up
        self.agent.push_state()

    def describe(self, room: dict[str, Any]) -> None:
        """Take what the server says of the room (join reply, creation, `members`): its kind
        and member list."""
        self.agent.kind = str(room.get("kind") or "public")
        members = room.get("members")
        self.agent.members = ({m for m in members if isinstance(m, str)}
                        if isinstance(members, list) else None)
        self.agent.device.push_rooms()

    async def _on_members(self, data: dict[str, Any]) -> None:
        """The member list changed: devices of users taken off it are dropped and refused."""
        self.describe(data)
        for device, peer in list(self.agent.roster.items()):
            if not self.admits(peer.user):
                self.agent.timeline.add("left", f"{peer.user} is no longer a member",
                                  user=peer.user, device=device)
                self.drop_peer(device)
        self.agent.push_state()

    async def _on_removed(self, data: dict[str, Any]) -> None:
        """This user was taken off the room's member list: the device leaves the room."""
        self.agent.timeline.add("removed", f"removed from #{self.agent.room} by its owner")
        self.agent.device.spawn(self.agent.device.leave(self.agent.room))

    async def _on_joined(self, reply: dict[str, Any]) -> None:
        self.describe(reply)
        self.agent.mesh.ice_servers = list(reply.get("ice_servers") or [])
        self._refresh_ice_servers_later(reply.get("ice_ttl"))
        # The server's roster is who is present now; a peer whose data channel is still open
        # stays even if the server (just restarted) does not list it yet.
        # A peer_joined or an offer that came while the join ran is newer than the reply and
        # stays too: rebuilding from the reply left such a pair unlinked.
        links = self.agent.mesh.links
        linked = {d for d, link in links.items() if link.state == LinkState.CONNECTED}
        stay = kept_on_join({d: self._learned.get(d, 0) for d in self.agent.roster}, (),
                            self.agent.client.join_generation, linked)
        self.agent.roster = {d: p for d, p in self.agent.roster.items() if d in stay}
        self.agent.present = set()
        for peer in reply.get("peers", []):
            self._add_from_server(peer)
        self.agent.known.save()
        self.agent.mesh.update_roster(self.agent.roster.values())
        for device in self.agent.roster:
            # Offers made before the join (from the cached roster, with no path) went nowhere.
            self.agent.mesh.nudge(device, force=device in self.agent.reach.unrouted)
        self.agent.push_state()
        await self.refresh_keys()
        await self.catch_up()

    def _refresh_ice_servers_later(self, ttl: Any) -> None:
        """TURN credentials minted by the server expire after `ttl` seconds (TURN_TTL): fetch
        fresh ones at half their life, so that connections made later can still get a relay."""
        if self._ice_refresh is not None:
            self._ice_refresh.cancel()
            self._ice_refresh = None
        if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:
            self._ice_refresh = asyncio.ensure_future(self._refresh_ice_servers(ttl / 2))
            self.agent._tasks.add(self._ice_refresh)
            self._ice_refresh.add_done_callback(self.agent._tasks.discard)

    async def _refresh_ice_servers(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                servers, ttl = await self.agent.client.ice_config()
            except (SignInError, OSError, aiohttp.ClientError) as exc:
                log.info("could not refresh the ICE servers: %s", exc)
                delay = 10.0
                continue
            self.agent.mesh.ice_servers = servers
            if ttl is None:
                return
            delay = ttl / 2

    def _add_from_server(self, peer: dict[str, Any]) -> PeerInfo | None:
        """Take a roster entry from the server: the mesh links to it, its key is vouched for,
        and the roster cache remembers it with its rendezvous address."""
        info = PeerInfo(user=peer["user"], device=peer["device"], public_key=peer["public_key"])
        if info.device == self.agent.key.device_id or not self.admits(info.user):
            return None
        self.agent.roster[info.device] = info
        self._learned[info.device] = self.agent.client.join_generation
        self.agent.present.add(info.device)
        self.agent.store.remember_key(info.device, info.user, info.public_key, "server")
        self.agent.known.remember(info, peer.get("rendezvous"), int(time.time() * 1000))
        return info

    def admits(self, user: str) -> bool:
        """Whether `user` may take part here: anyone in a public room, members in the others."""
        return self.agent.members is None or user in self.agent.members

    async def _on_peer_joined(self, data: dict[str, Any]) -> None:
        info = self._add_from_server(data["peer"])
        self.agent.known.save()
        self.agent.mesh.update_roster(self.agent.roster.values())
        if info is not None:
            self.agent.timeline.add("joined", f"{info.user} joined (device {info.device[:8]})",
                              user=info.user, device=info.device)
            # It may be a restart: offer now rather than when the retry backoff ends, and
            # make sure an open link is not one to its previous process.
            self.agent.mesh.nudge(info.device)
            self.agent.mesh.probe(info.device)
        self.agent.push_state()

    async def _on_peer_left(self, data: dict[str, Any]) -> None:
        device = data["device"]
        self.agent.present.discard(device)
        peer = self.agent.roster.get(device)
        user = peer.user if peer is not None else "?"
        self.agent.timeline.add("left", f"{user} left the server (device {device[:8]})",
                          user=user, device=device)
        link = self.agent.mesh.links.get(device)
        if data.get("reason") != "left" and link is not None and link.state == LinkState.CONNECTED:
            # Only its server connection may be gone: the pings will tell if the peer is.
            log.info("the server says %s left; its data channel is open, so it stays", device[:8])
        else:
            self.drop_peer(device)
        self.agent.push_state()

    def drop_peer(self, device: str) -> None:
        self.agent.core.forget(device)
        self.agent.roster.pop(device, None)
        self.agent.reach.down_since.pop(device, None)
        self.agent.mesh.peer_left(device)

    def drop_if_gone(self, device: str) -> None:
        """Drop a peer whose link failed if the server, reachable, does not list it."""
        link = self.agent.mesh.links.get(device)
        if (link is not None and link.state != LinkState.CONNECTED and self.agent.client.joined
                and device not in self.agent.present):
            log.info("link to %s failed and the server does not list it: dropped", device[:8])
            self.drop_peer(device)
            self.agent.push_state()

    async def _on_signal(self, data: dict[str, Any]) -> None:
        sender = data.get("from") or {}
        if sender.get("device") not in self.agent.roster and sender.get("public_key"):
            # An offer can overtake the peer_joined that announces its sender; the server
            # vouches for the sender's key in the signal itself.
            self._add_from_server(sender)
            self.agent.mesh.update_roster(self.agent.roster.values())
        await self.agent.mesh.handle_signal(sender.get("user", ""), sender.get("device", ""),
                                      str(data.get("kind")), data.get("payload") or {})

    def on_signal_refused(self, device: str, reason: str) -> None:
        """A forged, malformed or unexpected offer, answer or candidate: counted and shown like
        every other refusal."""
        peer = self.agent.roster.get(device)
        user = peer.user if peer is not None else f"device {device[:8]}"
        self.agent.refused["signal_refused"] += 1
        self.agent.timeline.add("refused", f"refused a signal from {user}: {reason[:200]}",
                          user=user, device=device, reason=f"signal refused: {reason[:200]}")

    async def _on_stored(self, data: dict[str, Any]) -> None:
        self._stored.update({m["id"]: int(m["cursor"]) for m in data.get("messages", [])
                             if isinstance(m, dict) and "id" in m and "cursor" in m})
        self._take_stored_soon.request()

    def take_stored(self) -> None:
        """Mark what the server said it stored (STORED_INTERVAL's notices in one commit)."""
        ids, self._stored = self._stored, {}
        if not ids:
            return
        self.agent.store.mark_known_by_server(self.agent.room, ids)
        # Ids this device lacks are read from the server's history soon, unless a peer brings
        # them first.
        self.agent._run(self.agent.core.server_named(ids, time.monotonic()))
        self.agent.wake_catch_up()

    def close(self) -> None:
        self._take_stored_soon.cancel()

    def on_own_upload(self, ids: dict[str, int]) -> None:
        """This agent's outbox uploaded these and the server acknowledged them."""
        for message_id, cursor in ids.items():
            self.agent.paths.record(message_id, "uploaded", cursor=cursor,
                              text=f"uploaded from here; the server stored it at cursor {cursor}")
        if ids:
            last = max(ids.values())
            count = len(ids)
            self.agent.timeline.add(
                "uploaded",
                f"server stored {count} message{'s' if count != 1 else ''} (up to cursor {last})",
                count=count, cursor=last)
        self.agent._run(self.agent.core.uploaded(ids))

    async def refresh_keys(self) -> None:
        try:
            for device in await self.agent.client.room_keys():
                self.agent.store.remember_key(device["id"], device["user"], device["public_key"],
                                        "server")
        except (SignInError, OSError) as exc:
            log.info("could not refresh the room's keys: %s", exc)

    async def catch_up(self) -> None:
        """Read the server's history after the last cursor seen, verified like any message.
        Three pages are under way at once: the server reads the next one, worker threads check
        this one's signatures (`RoomCore.to_check`, `verify_envelopes`), and the event loop
        stores the one before meanwhile."""
        after = self.agent.store.server_cursor(self.agent.room)
        fetch = asyncio.ensure_future(self.agent.client.history(after))
        checking: _Page | None = None
        try:
            while True:
                try:
                    rows, last = await fetch
                except (SignInError, OSError) as exc:
                    log.info("history catch-up stopped: %s", exc)
                    break
                more = bool(rows) and last != after
                if more:
                    fetch = asyncio.ensure_future(self.agent.client.history(last))
                    await asyncio.sleep(0)  # the request goes out before the page is taken
                page = self._check(rows, last)
                if checking is not None:
                    await self._take_history(checking)
                checking = page
                if not more:
                    break
                after = last
            if checking is not None:
                await self._take_history(checking)
                checking = None
        finally:
            fetch.cancel()
            if checking is not None:
                checking.signatures.cancel()

    def _check(self, rows: list[dict[str, Any]], last: int) -> _Page:
        """A page's signatures sent to worker threads, all else checked now."""
        core = self.agent.core
        pending = core.to_check(_envelope_fields(row) for row in rows)
        signatures = asyncio.ensure_future(asyncio.to_thread(
            verify_envelopes, pending.pairs, core.verify_pool))
        return _Page(rows, last, pending, signatures)

    async def _take_history(self, page: _Page) -> None:
        """One page of the server's history: verified, stored, recorded, cursor moved."""
        rows, last = page.rows, page.last
        effects: list[RoomEffect] = []
        envelopes = self.agent.core.settle(page.pending, await page.signatures, None,
                                           int(time.time() * 1000), effects)
        by_id = {f"{row['device']}:{row['seq']}": int(row["cursor"]) for row in rows}
        cursors = {env.id: by_id[env.id] for env in envelopes}
        self.agent._run(effects)
        log = self.agent.store
        with log.batch():  # the page, its cursors and the room's server cursor: one commit
            fresh = log.add_many(envelopes, "server", cursors)
            log.set_server_cursor(self.agent.room, last)
        for env in fresh:
            self.agent.paths.record(env.id, "received", via="server", cursor=cursors[env.id],
                                    text=f"received via the server: read from its history "
                                         f"(cursor {cursors[env.id]})")
        store = Store(tuple(envelopes), None, False, len(rows))
        self.agent._run(self.agent.core.stored(store, fresh, time.monotonic()))
        self.agent._catchup_wake.set()
        if rows:
            self.agent.timeline.add(
                "history", f"history from the server: {len(rows)} messages, "
                f"{len(fresh)} new", count=len(rows), fresh=len(fresh))


@dataclass
class _Page:
    """A page of the server's history whose signatures are being checked."""

    rows: list[dict[str, Any]]
    last: int
    pending: PendingChecks
    signatures: asyncio.Future[list[BadSignature | None]]


def _envelope_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The envelope in a row of the server's history (which adds its cursor)."""
    return {k: row[k] for k in ("room", "author", "device", "seq", "lamport", "ts", "text",
                                "sig")}
