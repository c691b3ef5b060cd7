"""The protocol's exceptions: one small hierarchy, each with a machine code and a human message."""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Untrusted input broke a protocol rule: `code` names the rule, `str(e)` explains it to people.

    Receivers drop the offending frame, log it and count it by `code`; the channel stays open.
    """

    code: ClassVar[str] = "protocol_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidEnvelope(ProtocolError):
    """An envelope, vector or frame is malformed or outside the protocol's limits."""

    code: ClassVar[str] = "invalid_envelope"


class InvalidName(ProtocolError):
    """A user or room name cannot be normalised into an allowed name."""

    code: ClassVar[str] = "invalid_name"


class BadSignature(ProtocolError):
    """A signature does not verify, or the key does not belong to the claimed device."""

    code: ClassVar[str] = "bad_signature"


class FrameTooLarge(ProtocolError):
    """A serialised frame is larger than MAX_FRAME_BYTES, so it is refused before parsing."""

    code: ClassVar[str] = "too_large"


class Conflict(ProtocolError):
    """Two envelopes share an id but differ in content; the first one stored wins."""

    code: ClassVar[str] = "conflict"


class LamportAhead(ProtocolError):
    """An envelope's Lamport time lies past the receiver's horizon (its clock in milliseconds
    plus LAMPORT_LEAD_MS). Refused for now, not for good: the horizon moves with the clock."""

    code: ClassVar[str] = "lamport_ahead"
