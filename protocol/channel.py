"""Every frame a peer data channel carries, listed in one place and parsed once.

A channel frame is one JSON object of at most MAX_FRAME_BYTES whose "t" names its type:

| "t"     | class          | module               | what it is                               |
|---------|----------------|----------------------|------------------------------------------|
| `msg`   | `MsgFrame`     | `protocol.sync`      | a live message                           |
| `vv`    | `VectorFrame`  | `protocol.sync`      | the sender's version vector (a pull)     |
| `vvd`   | `DigestFrame`  | `protocol.sync`      | a digest of the sender's vector          |
| `batch` | `BatchFrame`   | `protocol.sync`      | envelopes the receiver lacks             |
| `keys`  | `KeysFrame`    | `protocol.sync`      | device keys the sender knows             |
| `ack`   | `AckFrame`     | here                 | a receipt: the ids the sender stored     |
| `links` | `LinksFrame`   | `protocol.links`     | the sender's own data channels           |
| `sig`   | `SignalFrame`  | `protocol.relay`     | a relayed offer, answer, candidate, hello|
| `ping`  | `PingFrame`    | here                 | liveness probe, answered by a pong       |
| `pong`  | `PongFrame`    | here                 | the answer to a ping, echoing it         |

Every frame but ping and pong belongs to one room and travels tagged with it: `"room"` is its
first key (`tag_room`), and the receiver hands it to that room, or refuses it when the room is
not one it shares with the sender (`parse_room_frame`). One data channel per pair of devices
carries every room the two share (docs/protocol.md says why); ping and pong are about the
channel itself and carry no room.

Each class has `t`, a `parse(obj)` classmethod that validates the decoded JSON object and
raises InvalidEnvelope (a ProtocolError) naming what is wrong, and `encode()`. The browser peer
(static/chat/protocol/channel.js) exports the same names as `FRAME_TYPES`; a test holds them
equal. Ping and pong stay inside the mesh: every peer writes them with "t" first, which is how
the mesh tells them from the frames it passes on without decoding those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

from .errors import InvalidEnvelope
from .frames import _check_size, encode_frame, parse_frame
from .limits import MAX_BATCH, MAX_SAFE_INTEGER
from .links import LinksFrame
from .names import is_normalized_room
from .relay import SignalFrame
from .sync import BatchFrame, DigestFrame, KeysFrame, MsgFrame, VectorFrame

__all__ = [
    "FRAMES", "FRAME_TYPES", "AckFrame", "BatchFrame", "DigestFrame", "Frame", "KeysFrame",
    "LinksFrame", "MsgFrame", "PingFrame", "PongFrame", "SignalFrame", "VectorFrame",
    "frame_from_object", "is_control_frame", "parse_channel_frame", "parse_room_frame",
    "tag_room",
]

MAX_ACK_IDS: Final = 2 * MAX_BATCH
"""Most ids in one receipt: a receiver acknowledges at most one batch per frame."""
MAX_ACK_ID_CHARS: Final = 64
"""Longest id a receipt may name (`device:seq` is at most 49 characters)."""


@dataclass(frozen=True, slots=True)
class AckFrame:
    """A receipt: the ids of the envelopes the sender stored from us. Ephemeral, never logged."""

    t: ClassVar[str] = "ack"

    ids: tuple[str, ...]

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> AckFrame:
        """The receipt from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        if obj.keys() != {"t", "ids"}:
            raise InvalidEnvelope('an ack frame is {"t": "ack", "ids": [...]}')
        ids = obj["ids"]
        if not isinstance(ids, list) or len(ids) > MAX_ACK_IDS:
            raise InvalidEnvelope(f"'ack' frame: 'ids' must be a list of at most {MAX_ACK_IDS}")
        for item in ids:
            if type(item) is not str or not 0 < len(item) <= MAX_ACK_ID_CHARS:
                raise InvalidEnvelope("'ack' frame: every id must be a message id string")
        return cls(tuple(ids))

    def encode(self) -> str:
        """The frame as compact JSON, ready to send."""
        return encode_frame({"t": "ack", "ids": list(self.ids)})


def _probe(obj: dict[str, Any], kind: str) -> tuple[int, int | float]:
    if obj.keys() != {"t", "n", "at"}:
        raise InvalidEnvelope(f'a {kind} frame is {{"t": "{kind}", "n": ..., "at": ...}}')
    n, at = obj["n"], obj["at"]
    if type(n) is not int or not 0 <= n <= MAX_SAFE_INTEGER:
        raise InvalidEnvelope(f"'{kind}' frame: 'n' must be a whole number")
    if type(at) not in (int, float):
        raise InvalidEnvelope(f"'{kind}' frame: 'at' must be a number")
    return n, at


@dataclass(frozen=True, slots=True)
class PingFrame:
    """A liveness probe: the `n`th ping of this link, sent at the sender's clock `at` (seconds)."""

    t: ClassVar[str] = "ping"

    n: int
    at: int | float

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> PingFrame:
        """The ping from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        return cls(*_probe(obj, "ping"))

    def encode(self) -> str:
        """The frame as sent: "t" first (see the module docstring), `at` to the microsecond."""
        return f'{{"t":"ping","n":{self.n},"at":{self.at:.6f}}}'

    def answer(self) -> PongFrame:
        """The pong that answers this ping, echoing `n` and `at`."""
        return PongFrame(self.n, self.at)


@dataclass(frozen=True, slots=True)
class PongFrame:
    """The answer to ping `n`, echoing the pinger's `at`."""

    t: ClassVar[str] = "pong"

    n: int
    at: int | float

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> PongFrame:
        """The pong from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        return cls(*_probe(obj, "pong"))

    def encode(self) -> str:
        """The frame as sent, "t" first."""
        return f'{{"t":"pong","n":{self.n},"at":{self.at!r}}}'


Frame: TypeAlias = (MsgFrame | VectorFrame | DigestFrame | BatchFrame | KeysFrame | AckFrame
                    | LinksFrame | SignalFrame | PingFrame | PongFrame)
"""Any channel frame."""

FRAMES: Final[dict[str, type[Frame]]] = {
    cls.t: cls for cls in (MsgFrame, VectorFrame, DigestFrame, BatchFrame, KeysFrame, AckFrame,
                           LinksFrame, SignalFrame, PingFrame, PongFrame)}
"""Every channel frame type by its "t"."""

FRAME_TYPES: Final = tuple(FRAMES)
"""The values of "t" a channel frame may have."""

CONTROL_PREFIXES: Final = ('{"t":"ping",', '{"t":"pong",')
"""How ping and pong frames begin, as every peer writes them (see the module docstring)."""


def parse_channel_frame(data: str | bytes) -> Frame:
    """Decode one frame from a data channel, once, and validate it as the type its "t" names.

    Raises FrameTooLarge over MAX_FRAME_BYTES and InvalidEnvelope for anything else that is
    wrong: JSON that `protocol.strict_json` refuses, an unknown "t", a field missing, extra or
    malformed. Signatures are not checked here.
    """
    return frame_from_object(parse_frame(data))


def tag_room(text: str, room: str) -> str:
    """An encoded room frame as sent: `"room"` first, then the frame's own fields.

    Raises FrameTooLarge if the tagged frame is over MAX_FRAME_BYTES (frames packed by
    `protocol.sync` leave ROOM_TAG_BYTES free for the tag, so theirs never are)."""
    tagged = '{"room":' + json.dumps(room, ensure_ascii=False) + "," + text[1:]
    _check_size(len(tagged.encode("utf-8", "surrogatepass")))
    return tagged


def parse_room_frame(data: str | bytes) -> tuple[str, Frame]:
    """Decode a room frame from a data channel, once: its room and the frame.

    Raises what `parse_channel_frame` raises, and InvalidEnvelope for a frame with no room or a
    room that is not a room name, and for a ping or pong that names a room."""
    obj = parse_frame(data)
    if not isinstance(obj, dict):
        raise InvalidEnvelope("a channel frame must be a JSON object")
    room = obj.pop("room", None)
    if not is_normalized_room(room):
        raise InvalidEnvelope("a channel frame needs 'room': the name of the room it belongs to")
    frame = frame_from_object(obj)
    if isinstance(frame, PingFrame | PongFrame):
        raise InvalidEnvelope(f"a {frame.t} frame belongs to the channel, not to a room")
    assert isinstance(room, str)
    return room, frame


def frame_from_object(obj: object) -> Frame:
    """Validate a decoded JSON object as the channel frame its "t" names (see
    `parse_channel_frame`)."""
    if not isinstance(obj, dict):
        raise InvalidEnvelope("a channel frame must be a JSON object")
    kind = obj.get("t")
    cls = FRAMES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:40] + "…"
        raise InvalidEnvelope(
            f"unknown frame type {shown}: expected one of {', '.join(FRAME_TYPES)}")
    return cls.parse(obj)


def is_control_frame(text: str) -> bool:
    """Tell whether a received text is a ping or a pong, without decoding it."""
    return text.startswith(CONTROL_PREFIXES)
