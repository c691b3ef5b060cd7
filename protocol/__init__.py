"""Gibberish's protocol: pure code shared by the server, the agents and the tests, with no I/O.

Envelopes and their canonical signed bytes, device keys, validation limits, user and room names,
JSON frames, version vectors and the merge and display-order rules of a room's log.
"""

from .canonical import CHALLENGE_DOMAIN, ENVELOPE_DOMAIN, FINGERPRINT_DOMAIN, canonical_bytes
from .envelope import (
    Envelope,
    check_lamport_horizon,
    display_sorted,
    lamport_horizon,
    next_lamport,
    verify_envelopes,
)
from .errors import (
    BadSignature,
    Conflict,
    FrameTooLarge,
    InvalidEnvelope,
    InvalidName,
    LamportAhead,
    ProtocolError,
)
from .frames import encode_frame, parse_frame
from .keys import (
    PARALLEL_FROM,
    DeviceKey,
    b64decode,
    b64encode,
    check_signatures,
    device_id_for,
    load_public_key,
    verify_signature,
)
from .limits import (
    LAMPORT_LEAD_MS,
    MAX_BATCH,
    MAX_FRAME_BYTES,
    MAX_LAMPORT,
    MAX_ROOM_CHARS,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    MAX_TEXT_CHARS,
    MAX_TS,
    MAX_USERNAME_CHARS,
    MAX_VECTOR_DEVICES,
)
from .log import MessageLog
from .names import (
    is_normalized_room,
    is_normalized_username,
    normalize_room,
    normalize_username,
)
from .vector import VersionVector, vector_of

__all__ = [
    "CHALLENGE_DOMAIN",
    "ENVELOPE_DOMAIN",
    "FINGERPRINT_DOMAIN",
    "LAMPORT_LEAD_MS",
    "MAX_BATCH",
    "MAX_FRAME_BYTES",
    "MAX_LAMPORT",
    "MAX_ROOM_CHARS",
    "MAX_SEQ",
    "MAX_TEXT_BYTES",
    "MAX_TEXT_CHARS",
    "MAX_TS",
    "MAX_USERNAME_CHARS",
    "MAX_VECTOR_DEVICES",
    "BadSignature",
    "Conflict",
    "DeviceKey",
    "Envelope",
    "FrameTooLarge",
    "InvalidEnvelope",
    "InvalidName",
    "LamportAhead",
    "MessageLog",
    "PARALLEL_FROM",
    "ProtocolError",
    "VersionVector",
    "b64decode",
    "b64encode",
    "canonical_bytes",
    "check_lamport_horizon",
    "check_signatures",
    "device_id_for",
    "display_sorted",
    "encode_frame",
    "is_normalized_room",
    "is_normalized_username",
    "lamport_horizon",
    "load_public_key",
    "next_lamport",
    "normalize_room",
    "normalize_username",
    "parse_frame",
    "vector_of",
    "verify_envelopes",
    "verify_signature",
]
