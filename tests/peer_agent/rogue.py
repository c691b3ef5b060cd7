"""A peer that signs in and joins like any agent, then sends whatever frames a test chooses:
forged, replayed or malformed. Built from the agent's real parts (SignalingClient,
RoomSignaling, Mesh)."""

from __future__ import annotations

import json
from typing import Any

from peer_agent.mesh import LinkState, Mesh, PeerInfo
from peer_agent.room_signaling import RoomSignaling
from peer_agent.signaling_client import Credentials, SignalingClient
from protocol import DeviceKey, Envelope
from protocol.channel import is_control_frame, tag_room

PASSWORD = "rogue-password-123"


class RoguePeer:
    def __init__(self, server_url: str, room: str, name: str) -> None:
        self.name = name
        self.room = room
        self.key = DeviceKey.generate()
        self.roster: dict[str, PeerInfo] = {}
        self.received: list[str] = []
        self.connection = SignalingClient(server_url, self.key)
        self.client = RoomSignaling(
            self.connection, room, on_joined=self._joined, on_peer_joined=self._peer_joined,
            on_peer_left=lambda data: None, on_signal=self._signal, on_stored=lambda data: None,
            on_link=lambda up: None)
        self.mesh = Mesh(key=self.key, user=name, room=room, send_signal=self.client.signal,
                         on_frame=lambda peer, text: self.received.append(text),
                         on_link=lambda peer, state: None, ice_servers=[])
        self.seq = 0

    async def start(self) -> None:
        await self.connection.sign_in(Credentials(self.name, PASSWORD), register=True)
        self.client.start()
        self.connection.start()

    def _add(self, peer: dict[str, Any]) -> None:
        self.roster[peer["device"]] = PeerInfo(peer["user"], peer["device"], peer["public_key"])
        self.mesh.update_roster(self.roster.values())

    async def _joined(self, reply: dict[str, Any]) -> None:
        for peer in reply["peers"]:
            self._add(peer)

    async def _peer_joined(self, data: dict[str, Any]) -> None:
        self._add(data["peer"])

    async def _signal(self, data: dict[str, Any]) -> None:
        sender = data["from"]
        if sender["device"] not in self.roster:
            self._add(sender)
        await self.mesh.handle_signal(sender["user"], sender["device"], data["kind"],
                                      data["payload"])

    def connected_to(self, device: str) -> bool:
        link = self.mesh.links.get(device)
        return link is not None and link.state == LinkState.CONNECTED

    def envelope(self, text: str, author: str | None = None, lamport: int = 1,
                 room: str | None = None) -> Envelope:
        self.seq += 1
        return Envelope.create(self.key, room=room or self.room, author=author or self.name,
                               seq=self.seq, lamport=lamport, ts=1_700_000_000_000, text=text)

    def join_also(self, room: str) -> RoomSignaling:
        """Enter another room on the server with the same device over the same connection
        (its link stays the one it has); the caller closes the room returned."""
        other = RoomSignaling(
            self.connection, room, on_joined=lambda reply: None,
            on_peer_joined=lambda data: None, on_peer_left=lambda data: None,
            on_signal=lambda data: None, on_stored=lambda data: None, on_link=lambda up: None)
        other.start()
        return other

    def send_raw(self, device: str, frame: Any) -> None:
        """Send a frame tagged with the rogue's room, as every peer sends room frames: a string
        that opens a JSON object gets the tag put in front (other strings go as they are); an
        object gets it unless it names a room itself, or "room": None (sent with no room)."""
        if isinstance(frame, str) and frame.startswith("{") and not is_control_frame(frame):
            frame = tag_room(frame, self.room)
        if isinstance(frame, dict):
            room = frame.get("room", self.room)
            rest = {k: v for k, v in frame.items() if k != "room"}
            frame = rest if room is None else {"room": room, **rest}
        text = frame if isinstance(frame, str) else json.dumps(frame)
        assert self.mesh.send(device, text), "the channel is not open"

    async def close(self) -> None:
        await self.mesh.close()
        await self.client.close()
        await self.connection.close()
