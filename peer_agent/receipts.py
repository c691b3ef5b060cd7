"""Receipts (`ack` frames) to peers, coalesced: every id the room core acknowledges is sent, but
one frame per peer carries all the ids acknowledged within RECEIPT_INTERVAL.

A receipt per message per peer made receipts as many frames as messages on every channel, each
a send (SCTP, DTLS) here and a receive and a UI update at the author. The first receipt after a
quiet spell leaves at the end of the current loop turn; later ones wait at most RECEIPT_INTERVAL,
so a delivery mark in the author's UI is late by that much at most, and never wrong: every id is
sent, in the order acknowledged, and an id is never sent twice for one acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from protocol.channel import MAX_ACK_IDS, AckFrame

RECEIPT_INTERVAL = 0.05
"""Seconds between two receipt frames to one peer, at most (a busy room fills each one)."""


class Receipts:
    """Ids to acknowledge, per peer device, sent through `send(device, text)` in coalesced
    `ack` frames."""

    def __init__(self, send: Callable[[str, str], bool],
                 interval: float = RECEIPT_INTERVAL) -> None:
        self._send = send
        self._interval = interval
        self._pending: dict[str, list[str]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._sent_at = float("-inf")

    def add(self, device: str, ids: Sequence[str]) -> None:
        """Acknowledge `ids` to `device`: sent with the next receipt frame to it."""
        if not ids:
            return
        self._pending.setdefault(device, []).extend(ids)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            due = max(0.0, self._sent_at + self._interval - loop.time())
            self._flush = loop.call_later(due, self.flush)

    def flush(self) -> None:
        """Send every pending receipt now (a peer whose channel is closed gets none: it learns
        what we hold from our vector once it is back)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = self._pending, {}
        if pending:
            self._sent_at = asyncio.get_running_loop().time()
        for device, ids in pending.items():
            for start in range(0, len(ids), MAX_ACK_IDS):
                self._send(device, AckFrame(tuple(ids[start:start + MAX_ACK_IDS])).encode())

    def close(self) -> None:
        """Drop what is pending (the room is closing)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._pending.clear()
