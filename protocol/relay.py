"""Signal relay frames: offers, answers and candidates carried by peers when the server is down.

An agent that cannot signal through the server sends `{"t": "sig", "id", "to", "kind",
"payload"}` to the peers it has a path to (an open data channel or a rendezvous connection).
A peer that receives one addressed to someone else forwards it, once, on its own path to `to`,
adding `"from": {"user", "device"}`: the device at the other end of the path it came in on,
which that path authenticated. A frame that already has `from` is never forwarded again, so a
relay is one hop and cannot loop. `id` (random) lets the receiver drop the copies that arrive
by several relays.

Relaying needs no trust in the relay: an offer or answer carries the sender's device-key
signature of its DTLS fingerprint (`fp_sig`), checked against the key the server vouched for,
so a relay that alters the SDP only breaks the connection. `kind` is one of the server's
signal kinds, or "hello": "I am back, offer me a connection" (its payload may carry the
sender's new rendezvous address).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from .envelope import DEVICE_ID
from .errors import InvalidEnvelope
from .frames import encode_frame, parse_frame
from .names import is_normalized_username

RELAY_KINDS = ("offer", "answer", "candidate", "hello")
"""The values of "kind" a relay frame may have."""

_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_FIELDS = frozenset({"t", "id", "to", "kind", "payload"})


@dataclass(frozen=True, slots=True)
class Sender:
    """The device a relay vouches it received a frame from (its authenticated path)."""

    user: str
    device: str


@dataclass(frozen=True, slots=True)
class SignalFrame:
    """One relayed signal; `sender` is None on the frame its author sends, set by the relay."""

    t: ClassVar[str] = "sig"

    id: str
    to: str
    kind: str
    payload: dict[str, Any]
    sender: Sender | None = None

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> SignalFrame:
        """The frame from its decoded JSON object, every field but the payload's contents
        validated; InvalidEnvelope naming the field."""
        return parse_signal_frame(obj)

    def forwarded(self, sender: Sender) -> SignalFrame:
        """The frame as a relay passes it on, naming the device it came from."""
        return replace(self, sender=sender)

    def encode(self) -> str:
        """The frame as compact JSON; FrameTooLarge above MAX_FRAME_BYTES."""
        obj: dict[str, Any] = {"t": "sig", "id": self.id, "to": self.to, "kind": self.kind,
                               "payload": self.payload}
        if self.sender is not None:
            obj["from"] = {"user": self.sender.user, "device": self.sender.device}
        return encode_frame(obj)


def is_signal_frame(obj: object) -> bool:
    """Tell whether a parsed frame claims to be a relay frame (its "t" is "sig")."""
    return isinstance(obj, dict) and obj.get("t") == "sig"


def parse_signal_frame(data: str | bytes | dict[str, Any]) -> SignalFrame:
    """Parse one relay frame from untrusted input (text, or an object already parsed with
    `parse_frame`), validating every field but the payload's contents.

    Raises FrameTooLarge or InvalidEnvelope naming the field.
    """
    obj = data if isinstance(data, dict) else parse_frame(data)
    if not isinstance(obj, dict) or obj.get("t") != "sig":
        raise InvalidEnvelope("relay frame must be a JSON object with \"t\": \"sig\"")
    keys = set(obj.keys())
    if keys not in (_FIELDS, _FIELDS | {"from"}):
        raise InvalidEnvelope("relay frame has the wrong keys: expected id, to, kind, payload "
                              "and, on a forwarded frame, from")
    frame_id, to, kind, payload = obj["id"], obj["to"], obj["kind"], obj["payload"]
    if not isinstance(frame_id, str) or not _ID.fullmatch(frame_id):
        raise InvalidEnvelope("relay frame: 'id' must be 8 to 64 base64url characters")
    if type(to) is not str or not DEVICE_ID.fullmatch(to):
        raise InvalidEnvelope("relay frame: 'to' must be a device id")
    if kind not in RELAY_KINDS:
        raise InvalidEnvelope("relay frame: 'kind' must be one of " + ", ".join(RELAY_KINDS))
    if not isinstance(payload, dict):
        raise InvalidEnvelope("relay frame: 'payload' must be a JSON object")
    sender = None
    if "from" in obj:
        raw = obj["from"]
        if not isinstance(raw, dict) or raw.keys() != {"user", "device"}:
            raise InvalidEnvelope("relay frame: 'from' must be {user, device}")
        if not is_normalized_username(raw["user"]):
            raise InvalidEnvelope("relay frame: 'from.user' must be a user name in normal form")
        if type(raw["device"]) is not str or not DEVICE_ID.fullmatch(raw["device"]):
            raise InvalidEnvelope("relay frame: 'from.device' must be a device id")
        sender = Sender(raw["user"], raw["device"])
    return SignalFrame(frame_id, to, kind, payload, sender)
