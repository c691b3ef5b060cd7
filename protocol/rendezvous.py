"""The rendezvous handshake: how an agent that cannot reach the server proves to a peer that it
holds a device key the room knows, and how the peer proves the same back.

Every agent listens on a rendezvous address (published in the server's roster, cached by every
agent). A dialer opens a connection there and the two sides exchange three frames:

1. listener → dialer `{"t": "challenge", "room", "device", "nonce"}`: the listener's device id
   and a fresh random nonce (32 bytes, base64url);
2. dialer → listener `{"t": "hello", "user", "device", "rendezvous", "nonce", "sig"}`: the
   dialer's own nonce, its rendezvous address ("" if it has none) and its device-key signature
   of `dialer_proof_bytes(room, dialer, listener, listener_nonce, rendezvous)`;
3. listener → dialer `{"t": "welcome", "sig"}` with its signature of
   `listener_proof_bytes(room, listener, dialer, dialer_nonce)`, or `{"t": "refused", "reason"}`.

Each side checks the other's signature against a key the server vouched for; anything else is
refused. The role ("dialer" or "listener") is signed, so a proof cannot be reflected back, and
both device ids and the room are signed, so it cannot be replayed to another peer or room.
After the handshake the connection carries signal relay frames (`protocol.relay`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypeAlias

from .canonical import CHALLENGE_DOMAIN, canonical_bytes
from .envelope import DEVICE_ID
from .errors import InvalidEnvelope
from .frames import encode_frame, parse_frame
from .keys import SIGNATURE_BYTES, b64decode
from .names import is_normalized_room, is_normalized_username

NONCE_BYTES = 32
"""Bytes of randomness in a rendezvous nonce."""

MAX_ADDRESS_CHARS = 128
"""Longest rendezvous address (`host:port`) accepted, as the server's roster allows."""

MAX_REASON_CHARS = 200


def dialer_proof_bytes(room: str, dialer: str, listener: str, listener_nonce: str,
                       rendezvous: str) -> bytes:
    """The bytes a dialer signs to prove its device key to `listener`."""
    return canonical_bytes(CHALLENGE_DOMAIN,
                           ["dialer", room, dialer, listener, listener_nonce, rendezvous])


def listener_proof_bytes(room: str, listener: str, dialer: str, dialer_nonce: str) -> bytes:
    """The bytes a listener signs to prove its device key to `dialer`."""
    return canonical_bytes(CHALLENGE_DOMAIN, ["listener", room, listener, dialer, dialer_nonce])


@dataclass(frozen=True, slots=True)
class Challenge:
    """The listener's opening frame."""

    room: str
    device: str
    nonce: str

    def encode(self) -> str:
        """The frame as compact JSON."""
        return encode_frame({"t": "challenge", "room": self.room, "device": self.device,
                             "nonce": self.nonce})


@dataclass(frozen=True, slots=True)
class Hello:
    """The dialer's answer: who it is, where it listens, its nonce and its proof."""

    user: str
    device: str
    rendezvous: str
    nonce: str
    sig: str

    def encode(self) -> str:
        """The frame as compact JSON."""
        return encode_frame({"t": "hello", "user": self.user, "device": self.device,
                             "rendezvous": self.rendezvous, "nonce": self.nonce,
                             "sig": self.sig})


@dataclass(frozen=True, slots=True)
class Welcome:
    """The listener's proof; the connection is open for relay frames from now on."""

    sig: str

    def encode(self) -> str:
        """The frame as compact JSON."""
        return encode_frame({"t": "welcome", "sig": self.sig})


@dataclass(frozen=True, slots=True)
class Refused:
    """The listener refused the dialer; `reason` says why, for its log."""

    reason: str

    def encode(self) -> str:
        """The frame as compact JSON, the reason cut to MAX_REASON_CHARS."""
        return encode_frame({"t": "refused", "reason": self.reason[:MAX_REASON_CHARS]})


HandshakeFrame: TypeAlias = Challenge | Hello | Welcome | Refused

_FIELDS = {
    "challenge": frozenset({"t", "room", "device", "nonce"}),
    "hello": frozenset({"t", "user", "device", "rendezvous", "nonce", "sig"}),
    "welcome": frozenset({"t", "sig"}),
    "refused": frozenset({"t", "reason"}),
}


def parse_handshake_frame(data: str | bytes) -> HandshakeFrame:
    """Parse one handshake frame from untrusted input, validating every field.

    Raises FrameTooLarge or InvalidEnvelope (naming the field). Signatures are not checked here.
    """
    obj = parse_frame(data)
    if not isinstance(obj, dict):
        raise InvalidEnvelope("rendezvous frame must be a JSON object")
    kind = obj.get("t")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise InvalidEnvelope("unknown rendezvous frame type: expected one of "
                              + ", ".join(_FIELDS))
    if obj.keys() != _FIELDS[kind]:
        raise InvalidEnvelope(f"rendezvous {kind!r} frame has the wrong keys: expected "
                              + ", ".join(sorted(_FIELDS[kind])))
    if kind == "challenge":
        if not is_normalized_room(obj["room"]):
            raise InvalidEnvelope("rendezvous challenge: 'room' must be a room name")
        return Challenge(obj["room"], _device(obj["device"]), _nonce(obj["nonce"]))
    if kind == "hello":
        if not is_normalized_username(obj["user"]):
            raise InvalidEnvelope("rendezvous hello: 'user' must be a user name in normal form")
        return Hello(obj["user"], _device(obj["device"]), _address(obj["rendezvous"]),
                     _nonce(obj["nonce"]), _sig(obj["sig"]))
    if kind == "welcome":
        return Welcome(_sig(obj["sig"]))
    reason = obj["reason"]
    if not isinstance(reason, str):
        raise InvalidEnvelope("rendezvous refusal: 'reason' must be a string")
    return Refused(reason[:MAX_REASON_CHARS])


def _device(value: object) -> str:
    if type(value) is not str or not DEVICE_ID.fullmatch(value):
        raise InvalidEnvelope("rendezvous frame: 'device' must be 32 lowercase hexadecimal digits")
    return value


def _nonce(value: object) -> str:
    try:
        if isinstance(value, str) and len(b64decode(value)) == NONCE_BYTES:
            return value
    except ValueError:
        pass
    raise InvalidEnvelope(f"rendezvous frame: 'nonce' must be {NONCE_BYTES} bytes of base64url")


def _sig(value: object) -> str:
    try:
        if isinstance(value, str) and len(b64decode(value)) == SIGNATURE_BYTES:
            return value
    except ValueError:
        pass
    raise InvalidEnvelope(f"rendezvous frame: 'sig' must be {SIGNATURE_BYTES} bytes of base64url")


def _address(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_ADDRESS_CHARS or (
            value and not is_address(value)):
        raise InvalidEnvelope("rendezvous frame: 'rendezvous' must be host:port or empty")
    refusal = publish_refusal(value) if value else None
    if refusal is not None:
        raise InvalidEnvelope(f"rendezvous frame: 'rendezvous' is not dialled: {refusal}")
    return value


def is_address(value: str) -> bool:
    """Tell whether `value` is a rendezvous address: `host:port` or `[ipv6]:port`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or len(port) > 5:
        return False
    if not 0 < int(port) < 65536 or len(value) > MAX_ADDRESS_CHARS:
        return False
    if host.startswith("["):
        return host.endswith("]") and all(c in "0123456789abcdefABCDEF:." for c in host[1:-1])
    return all(c.isascii() and (c.isalnum() or c in ".-") for c in host)


MIN_DIAL_PORT = 1024
"""Lowest port an agent dials: rendezvous listeners use unprivileged (usually ephemeral) ports,
so well-known services (ssh, smtp, http, …) are never dialled on a member's say-so."""

# Metadata services of cloud machines that are not link-local addresses.
_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_address(address: str) -> tuple[IPAddress, int] | None:
    """The IP address and port of `ip:port` or `[ipv6]:port`, or None for anything else (a
    host name included)."""
    if not isinstance(address, str) or not is_address(address):
        return None
    host, _, port = address.rpartition(":")
    bracketed = host.startswith("[")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return None
    if (ip.version == 6) != bracketed:
        return None
    return ip, int(port)


def publish_refusal(address: str) -> str | None:
    """Why no agent would ever dial `address`, so the server need not list it, or None.

    The server checks what it can without knowing the dialling agent: a rendezvous address is
    an IP address (a name could be made to resolve anywhere) and never link-local, multicast,
    unspecified, reserved or a cloud metadata address."""
    parsed = split_address(address)
    if parsed is None:
        return "a rendezvous address is ip:port or [ipv6]:port, with no host name"
    ip, _ = parsed
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address is not a rendezvous address"
    if ip.is_link_local or ip in _METADATA:
        return "link-local and metadata addresses are never dialled"
    if ip.is_multicast or ip.is_unspecified or (ip.is_reserved and not ip.is_loopback):
        return "multicast, unspecified and reserved addresses are never dialled"
    return None


def dial_refusal(address: str, own: str | None, server: tuple[str, int] | None) -> str | None:
    """Why an agent that publishes `own` (its own rendezvous address) must not dial `address`
    taken from a roster or a peer, or None if it may.

    An agent dials only what it could itself have published: an IP address of its own family,
    loopback if and only if its own address is loopback, a port from MIN_DIAL_PORT up, never an
    address `publish_refusal` refuses, and never the signaling server's own address
    (`server`, as host and port; the host only when the agent is not on loopback)."""
    refusal = publish_refusal(address)
    if refusal is not None:
        return refusal
    parsed, mine = split_address(address), split_address(own or "")
    assert parsed is not None
    ip, port = parsed
    if mine is None:
        return "this agent publishes no rendezvous address of its own"
    own_ip = mine[0]
    if ip.version != own_ip.version:
        return f"this agent publishes an IPv{own_ip.version} address, not IPv{ip.version}"
    if ip.is_loopback != own_ip.is_loopback:
        return ("loopback is dialled only by an agent that publishes loopback"
                if ip.is_loopback else "an agent on loopback dials only loopback")
    if port < MIN_DIAL_PORT:
        return f"ports below {MIN_DIAL_PORT} are never dialled"
    if server is not None:
        server_host, server_port = server
        try:
            server_ip = ipaddress.ip_address(server_host.strip("[]"))
        except ValueError:
            server_ip = None
        if server_ip == ip and (port == server_port or not ip.is_loopback):
            return "the signaling server's own address is never dialled"
    return None
