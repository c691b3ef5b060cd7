"""What the room core (`peer_agent.room_core`) decides, as values: the effects the agent carries
out in the order given (send, broadcast, store, show, upload, refuse, …), and `Peer`, the device
at the other end of a channel that many of them name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from protocol import Envelope, VersionVector
from protocol.catchup import PullServer
from protocol.channel import Frame, SignalFrame
from protocol.sync import KnownDevice

__all__ = [
    "Broadcast", "Event", "Peer", "PullServer", "Record", "RefreshKeys", "Refuse", "RelaySignal",
    "RememberKeys", "RoomEffect", "Send", "SendKeys", "SendMissing", "Show", "ShowDelivery",
    "StateChanged", "Store", "Upload",
]


@dataclass(frozen=True, slots=True)
class Peer:
    """The device at the other end of a channel, as the roster names it."""

    user: str
    device: str



@dataclass(frozen=True, slots=True)
class Send:
    """Send `frame` to `device` on its data channel."""

    device: str
    frame: Frame


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send `frame` to every linked device."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Store:
    """Commit verified envelopes received from `peer` (None: the server) in one transaction,
    then tell the core which were fresh with `RoomCore.stored(this, fresh)`."""

    envelopes: tuple[Envelope, ...]
    peer: Peer | None
    live: bool
    received: int


@dataclass(frozen=True, slots=True)
class Show:
    """A message new to this device: show it in the UI."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class ShowDelivery:
    """Who has our message `message_id` changed: update it in the UI."""

    message_id: str


@dataclass(frozen=True, slots=True)
class Upload:
    """Messages the server may lack arrived: wake the outbox. `others`: only other devices'
    messages, which the outbox holds back for a grace (their author uploads them too)."""

    others: bool = False


@dataclass(frozen=True, slots=True)
class Refuse:
    """A frame or envelope was dropped: count it under `code`, log it and show it."""

    peer: Peer | None
    code: str
    reason: str
    what: str = "frame"


@dataclass(frozen=True, slots=True)
class Event:
    """A line in this device's timeline (`peer_agent.records.Timeline`)."""

    kind: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    """A step in one message's path (`peer_agent.records.PathJournal`)."""

    message_id: str
    what: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendMissing:
    """Send `device` every envelope its `vector` lacks, in batches (a walk of the log)."""

    device: str
    vector: VersionVector


@dataclass(frozen=True, slots=True)
class SendKeys:
    """Send `device` the device keys this device knows."""

    device: str


@dataclass(frozen=True, slots=True)
class RememberKeys:
    """Keep device keys a peer told us of, as that peer's claim (`source`)."""

    devices: tuple[KnownDevice, ...]
    source: str


@dataclass(frozen=True, slots=True)
class RefreshKeys:
    """Ask the server for the room's device keys: an envelope named a device we do not know."""


@dataclass(frozen=True, slots=True)
class RelaySignal:
    """A relay frame (`protocol.relay`) came from `peer`: hand it to the signal relay."""

    peer: Peer
    frame: SignalFrame


@dataclass(frozen=True, slots=True)
class StateChanged:
    """Something the UI's state shows changed."""


RoomEffect: TypeAlias = (Send | Broadcast | Store | Show | ShowDelivery | Upload | Refuse | Event
                         | Record | SendMissing | SendKeys | RememberKeys | RefreshKeys
                         | RelaySignal | StateChanged | PullServer)
