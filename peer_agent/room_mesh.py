"""One room's view of the device's mesh: the links to that room's devices, and frames tagged
with the room.

A device holds one `Mesh` (one RTCPeerConnection and one data channel per peer device) for all
of its rooms. Each room sees it through a `RoomMesh`: its own roster, the links to the devices
on it, and `send`/`broadcast` that tag every frame with the room (`protocol.channel.tag_room`)
and reach only the room's devices. The device links to a peer while any room lists it, so
joining a second room with a linked device opens nothing new, and a room that drops a device
closes the link only when no other room lists it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from protocol.channel import tag_room
from protocol.links import MAX_LINKS, LinkReport, LinksFrame

from .mesh import Link, LinkState, Mesh, PeerInfo

# How often each room tells its linked peers about its data channels (and on every change),
# for their network views.
LINKS_REPORT_INTERVAL = 5.0


class MeshOwner(Protocol):
    """What a room view needs from the device that owns the mesh."""

    mesh: Mesh

    def roster_changed(self) -> None: ...
    def admitted(self, room: str, device: str) -> None: ...


class RoomMesh:
    """The device's mesh as one room uses it (the interface of `Mesh` the room agent calls)."""

    def __init__(self, owner: MeshOwner, room: str,
                 on_link: Callable[[PeerInfo, LinkState], None]) -> None:
        self._owner = owner
        self.room = room
        self.peers: dict[str, PeerInfo] = {}
        self._on_link = on_link

    @property
    def _mesh(self) -> Mesh:
        return self._owner.mesh

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        return self._mesh.ice_servers

    @ice_servers.setter
    def ice_servers(self, servers: list[dict[str, Any]]) -> None:
        self._mesh.ice_servers = servers

    @property
    def links(self) -> dict[str, Link]:
        """The links to this room's devices, by device id."""
        return {d: link for d, link in self._mesh.links.items() if d in self.peers}

    def update_roster(self, peers: Iterable[PeerInfo]) -> None:
        """This room's roster is `peers`; the device's mesh links to every room's devices.

        A device this room adds that another room already linked is reported up at once:
        the room starts its exchange (digests, keys) over the link it now shares."""
        before = set(self.peers)
        self.peers = {p.device: p for p in peers if p.device != self._mesh.device}
        self._owner.roster_changed()
        links = self._mesh.links
        for device in set(self.peers) - before:
            link = links.get(device)
            if link is not None and link.state is LinkState.CONNECTED:
                self._on_link(link.peer, LinkState.CONNECTED)
            self._owner.admitted(self.room, device)

    def nudge(self, device: str, *, force: bool = False) -> bool:
        return device in self.peers and self._mesh.nudge(device, force=force)

    def probe(self, device: str, timeout: float = 1.5) -> None:
        if device in self.peers:
            self._mesh.probe(device, timeout)

    def peer_left(self, device: str) -> None:
        """The room no longer lists `device`: its link closes unless another room lists it."""
        if self.peers.pop(device, None) is not None:
            self._owner.roster_changed()

    async def handle_signal(self, from_user: str, from_device: str, kind: str,
                            payload: dict[str, Any]) -> None:
        """A signal that came through this room (the server's relay or a peer's)."""
        await self._mesh.handle_signal(from_user, from_device, kind, payload, room=self.room)

    def send(self, device: str, text: str) -> bool:
        """Send a frame of this room to one of its devices; False if it is not linked."""
        return device in self.peers and self._mesh.send(device, tag_room(text, self.room))

    async def writable(self, device: str) -> bool:
        """Wait until the channel to `device` can take more bulk data (Mesh.writable)."""
        return device in self.peers and await self._mesh.writable(device)

    def broadcast(self, text: str) -> list[str]:
        """Send a frame of this room to each of its linked devices; the devices it went to."""
        tagged = tag_room(text, self.room)
        return [d for d in self.peers if self._mesh.send(d, tagged)]

    def report_links(self) -> None:
        """Tell the room's linked peers which data channels this device has to the room's
        devices, with their RTTs (protocol/links.py)."""
        links = tuple(LinkReport(device, link.state.value, link.rtt_ms)
                      for device, link in sorted(self.links.items())[:MAX_LINKS])
        self.broadcast(LinksFrame(links).encode())

    async def report_links_forever(self) -> None:
        while True:
            await asyncio.sleep(LINKS_REPORT_INTERVAL)
            self.report_links()

    async def close(self) -> None:
        """The room is left: drop its roster (links no other room needs close)."""
        self.peers.clear()
        self._owner.roster_changed()
