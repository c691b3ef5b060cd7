"""Hard limits of the protocol, shared by the server, the agents and the browser peer."""

from __future__ import annotations

from typing import Final

MAX_TEXT_CHARS: Final = 4000
"""Most Unicode code points in a message text (in JavaScript: `[...text].length`)."""

MAX_TEXT_BYTES: Final = 12_000
"""Most UTF-8 bytes in a message text."""

MAX_FRAME_BYTES: Final = 16_384
"""Most UTF-8 bytes in one serialised JSON frame; browsers need frames well under 16 KiB."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer JavaScript represents exactly, so every peer reads the same number."""

MAX_SEQ: Final = MAX_SAFE_INTEGER
MAX_LAMPORT: Final = MAX_SAFE_INTEGER
MAX_TS: Final = MAX_SAFE_INTEGER

LAMPORT_LEAD_MS: Final = 24 * 60 * 60 * 1000
"""How far past the receiver's clock (milliseconds since the epoch) an envelope's Lamport time
may lie. Honest Lamport times count messages and stay far below the clock in milliseconds, so
the bound only stops one envelope from pushing the room's clock to MAX_LAMPORT (see
`protocol.envelope.check_lamport_horizon`)."""

MAX_USERNAME_CHARS: Final = 32
MAX_ROOM_CHARS: Final = 64

ROOM_TAG_BYTES: Final = 400
"""Bytes every packed frame leaves free for its room tag (`"room":"…",`, a room name of at most
MAX_ROOM_CHARS characters of up to four UTF-8 bytes each, escaped), so that a tagged frame stays
within MAX_FRAME_BYTES (see `protocol.channel.tag_room`)."""

MAX_BATCH: Final = 100
"""Most envelopes in one sync batch or upload batch."""

MAX_VECTOR_DEVICES: Final = 10_000
"""Most devices a version vector from the network may name."""
