"""Delayed SACKs for aiortc's SCTP association, as RFC 9260 section 6.2 has a receiver do.

aiortc 1.16.0 (`RTCSctpTransport._handle_data`) acknowledges every SCTP packet that carries
DATA with a SACK packet of its own, sent at once: on a data channel of small messages, half of
the datagrams each way are SACKs, and each costs a DTLS record and a datagram at the receiver
and a decryption, a parse and a congestion-window update at the sender. RFC 9260 section 6.2
asks instead for a SACK for at least every second packet received, and within a delay of at
most 500 ms of an unacknowledged one (200 ms is usual), and at once when a packet arrives out of
order or twice (a gap or a duplicate, so that the sender's fast retransmit is not slowed).

`install()` changes `RTCSctpTransport._send_sack`, the one place aiortc sends a SACK (called by
`_handle_data` after a packet's chunks are handled, whenever one is needed), to follow that:

- a gap, a duplicate, or an association not in the ESTABLISHED state: the SACK leaves at once;
- otherwise the second packet not acknowledged yet sends it, and a first one arms a timer of
  `SACK_DELAY` seconds that sends it if no second packet came.

and `RTCSctpTransport._send_chunk` (aiortc puts one chunk in each packet) so that a DATA chunk
leaving while a delayed SACK waits carries the SACK in front of it, in one packet: in a
conversation, where both sides write, nearly every SACK rides on a message.

`SACK_DELAY` is far shorter than the RFC's 200 ms: a bulk sender (a catch-up) whose congestion
window is full waits for the SACK of an odd last packet, and the sender's retransmission timer
(at least 1 s in aiortc) is never reached. Nothing else in aiortc changes: the SACK's contents
are built by aiortc's own `_send_sack` when it leaves, and a bundled packet is serialised by
aiortc's own `serialize_packet`. The agent installs it at start
(`peer_agent.__main__`); `GIBBERISH_SCTP_SACK_DELAY_MS=0` turns it off (every packet acknowledged
at once, as aiortc does), which the benchmarks use as the baseline."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Final, cast

from aiortc.rtcsctptransport import (
    Chunk,
    DataChunk,
    RTCSctpTransport,
    SackChunk,
    serialize_packet,
)

log = logging.getLogger(__name__)

SACK_DELAY: Final = 0.02
"""Seconds a lone packet's SACK may wait for a second packet to acknowledge with it."""

WRITTEN_FOR: Final = "1.16.0"
"""The aiortc version whose `RTCSctpTransport` internals this module was written against
(requirements.txt pins it)."""

BUNDLE_MAX: Final = 1000
"""Bytes of user data a DATA chunk may carry and still take a waiting SACK along in its packet
(a full chunk, 1,200 bytes, leaves alone: the packet stays within the size aiortc keeps to)."""

_original_send_sack: Final[Callable[[RTCSctpTransport], Awaitable[None]]] = (
    RTCSctpTransport._send_sack)
_original_send_chunk: Final[Callable[[RTCSctpTransport, Chunk], Awaitable[None]]] = (
    RTCSctpTransport._send_chunk)


@dataclass
class _Pending:
    """A delayed SACK of one association: the packets it will acknowledge, its timer."""

    packets: int = 0
    timer: asyncio.TimerHandle | None = None
    sending: set[asyncio.Task[None]] = field(default_factory=set)
    taking: bool = False
    """aiortc is building the SACK for a DATA packet to carry: it is taken, not sent."""
    taken: SackChunk | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.packets = 0


_pending: weakref.WeakKeyDictionary[RTCSctpTransport, _Pending] = weakref.WeakKeyDictionary()
_delay: float | None = None


def install(delay: float | None = None) -> float:
    """Delay SACKs by up to `delay` seconds (default: `GIBBERISH_SCTP_SACK_DELAY_MS`, else
    SACK_DELAY) in every association of this process; 0 restores aiortc's SACK per packet.
    Returns the delay in effect."""
    global _delay
    if delay is None:
        setting = os.environ.get("GIBBERISH_SCTP_SACK_DELAY_MS")
        delay = SACK_DELAY if setting is None else float(setting) / 1000
    if delay > 0 and version("aiortc") != WRITTEN_FOR:
        # It reads aiortc's private state (`_sack_needed`, `_sack_misordered`, ...): another
        # version keeps its own rule rather than risk a SACK never sent.
        log.warning("aiortc %s is not %s: SCTP acknowledges every packet, as aiortc does",
                    version("aiortc"), WRITTEN_FOR)
        delay = 0.0
    if delay <= 0:
        _delay = None
        RTCSctpTransport._send_sack = _original_send_sack  # type: ignore[method-assign,assignment]
        RTCSctpTransport._send_chunk = _original_send_chunk  # type: ignore[method-assign,assignment]
        return 0.0
    _delay = delay
    RTCSctpTransport._send_sack = _send_sack_delayed  # type: ignore[method-assign,assignment]
    RTCSctpTransport._send_chunk = _send_chunk_bundling  # type: ignore[method-assign,assignment]
    log.info("SCTP: a SACK for every second packet, or for a lone one after %g ms", delay * 1000)
    return delay


async def _send_sack_delayed(transport: RTCSctpTransport) -> None:
    """aiortc's `_send_sack`, called once per packet that needs acknowledging."""
    pending = _pending.get(transport)
    if pending is None:
        pending = _pending[transport] = _Pending()
    pending.packets += 1
    if (_delay is None or pending.packets >= 2 or transport._sack_misordered
            or transport._sack_duplicates
            or transport._association_state != RTCSctpTransport.State.ESTABLISHED):
        pending.cancel()
        await _original_send_sack(transport)
        return
    if pending.timer is None:
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_later(_delay, _due, transport, pending)


def _due(transport: RTCSctpTransport, pending: _Pending) -> None:
    """The delay is over: acknowledge what came since the last SACK, if it is still needed."""
    pending.timer = None
    pending.packets = 0
    if (not transport._sack_needed
            or transport._association_state != RTCSctpTransport.State.ESTABLISHED):
        return
    task = asyncio.get_running_loop().create_task(_send_now(transport))
    pending.sending.add(task)
    task.add_done_callback(pending.sending.discard)


async def _send_now(transport: RTCSctpTransport) -> None:
    try:
        await _original_send_sack(transport)
    except ConnectionError as exc:  # the DTLS transport closed meanwhile: nothing to acknowledge
        log.debug("delayed SACK not sent: %s", exc)


async def _send_chunk_bundling(transport: RTCSctpTransport, chunk: Chunk) -> None:
    """aiortc's `_send_chunk` (one chunk per packet), except that a DATA chunk leaving while
    a delayed SACK waits takes the SACK along, in front of it in the same packet (RFC 9260
    section 6.2: a SACK may ride on outgoing DATA; control chunks come first, section 6.10)."""
    pending = _pending.get(transport)
    if pending is None:
        await _original_send_chunk(transport, chunk)
        return
    if pending.taking and isinstance(chunk, SackChunk):
        pending.taken = chunk
        return
    if (not isinstance(chunk, DataChunk) or pending.timer is None
            or not transport._sack_needed or len(chunk.user_data) > BUNDLE_MAX):
        await _original_send_chunk(transport, chunk)
        return
    pending.taking = True
    try:
        await _original_send_sack(transport)  # builds the SACK; its `_send_chunk` is taken
    finally:
        pending.taking = False
    sack, pending.taken = pending.taken, None
    pending.cancel()
    if sack is None:  # nothing was built after all
        await _original_send_chunk(transport, chunk)
        return
    await transport.transport._send_data(_packet(transport, bytes(sack) + bytes(chunk)))


def _packet(transport: RTCSctpTransport, chunks: bytes) -> bytes:
    """An SCTP packet of `chunks` (each padded already): aiortc's `serialize_packet` takes any
    value whose bytes are the chunks, and puts them behind the common header and CRC32c."""
    assert transport._remote_port is not None  # known once the association is up
    return serialize_packet(transport._local_port, transport._remote_port,
                            transport._remote_verification_tag, cast(Chunk, chunks))
