"""One link of the mesh: a peer device as the roster lists it, and where its connection stands.

`Link` is the state `peer_agent.mesh` keeps per peer device; `peer_agent.negotiation` (offer,
answer, fingerprints) and `peer_agent.keepalive` (the data channel, ping and pong) read and
write its private fields on the mesh's behalf, and no one else does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from protocol import ProtocolError, b64decode, device_id_for
from protocol.limits import MAX_SAFE_INTEGER
from protocol.link_rules import Liveness
from protocol.links import LinkPath

from .link_path import selected_path

CHANNEL_LABEL = "gibberish"
SIGNAL_KINDS = ("offer", "answer", "candidate")


class LinkState(StrEnum):
    """Where the link to one peer device stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class PeerInfo:
    """A device of the room as the server's roster lists it."""

    user: str
    device: str
    public_key: str


@dataclass
class Link:
    """The mesh's view of its connection to one peer device.

    `attempts` counts the offers made (offering side) or accepted (answering side) for this link;
    `connect_ms` is how long the last successful attempt took to open the data channel.
    """

    peer: PeerInfo
    state: LinkState
    rtt_ms: float | None = None
    attempts: int = 0
    offerer: bool = False
    connect_ms: float | None = None
    _pc: RTCPeerConnection | None = field(default=None, init=False, repr=False)
    _channel: RTCDataChannel | None = field(default=None, init=False, repr=False)
    _awaiting_answer: bool = field(default=False, init=False, repr=False)
    _unanswered: int = field(default=0, init=False, repr=False)
    _attempt_started: float = field(default=0.0, init=False, repr=False)
    _failures: int = field(default=0, init=False, repr=False)
    _ping_n: int = field(default=0, init=False, repr=False)
    _ping_sent_at: float = field(default=0.0, init=False, repr=False)
    _liveness: Liveness = field(default_factory=lambda: Liveness(0.0), init=False, repr=False)
    _watchdog: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _offer_oid: int | None = field(default=None, init=False, repr=False)
    _accepted_oid: int | None = field(default=None, init=False, repr=False)
    # The room the current offer and answer are signed for and travel through: the offerer
    # picks one both share, the answerer answers in the offer's room.
    _signal_room: str | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> LinkPath | None:
        """Which way the link goes (its nominated ICE candidate pair), while it is connected."""
        return selected_path(self._pc) if self.state is LinkState.CONNECTED else None


SendSignal = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""Send a signal through the server: (to_device, kind, payload), kind in SIGNAL_KINDS."""
SendRoomSignal = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""`(room, to, kind, payload)`: signal `to` through the room `room` (the server's signal needs
a room both ends are in)."""


class SignalRefused(ProtocolError):
    """A signal was refused: unknown sender, bad fingerprint signature or unexpected kind."""

    code = "signal_refused"



def offer_id(payload: dict[str, Any]) -> int | None:
    """The `oid` of an offer or answer, or None when it has none usable (an older peer)."""
    oid = payload.get("oid")
    if isinstance(oid, int) and not isinstance(oid, bool) and 0 < oid <= MAX_SAFE_INTEGER:
        return oid
    return None


def device_matches_key(peer: PeerInfo) -> bool:
    """Whether the roster entry's device id derives from its public key."""
    try:
        return device_id_for(b64decode(peer.public_key)) == peer.device
    except ValueError:
        return False


def short(device: str) -> str:
    """A device id as logs and refusals name it."""
    return device[:8]
