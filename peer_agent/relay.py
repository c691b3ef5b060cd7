"""Signals carried by peers: the path an offer, answer or hello takes when the server cannot
carry it (down, frozen, or the other device is not connected to it).

The frames and their rules are `protocol.relay`'s. A signal for a device this agent has a
direct path to (a rendezvous session or an open data channel) goes on that path alone;
otherwise it goes to every neighbour, and each neighbour that has a path to the device forwards
it there, once, naming the sender. The receiver drops copies by the frame id.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from protocol import FrameTooLarge
from protocol.relay import Sender, SignalFrame

log = logging.getLogger("gibberish.agent.relay")

SEEN_IDS = 4096
"""How many frame ids are remembered to drop copies: far more than a room's mesh makes while
its links form."""


class SignalRelay:
    """Sends, forwards and de-duplicates relay frames for one device.

    `send_direct(device, text)` sends a frame on a direct path (False if there is none) and
    `neighbours()` lists the devices with a direct path; the agent wires both to its rendezvous
    sessions and its data channels.
    """

    def __init__(self, device: str, *, send_direct: Callable[[str, str], bool],
                 neighbours: Callable[[], Iterable[str]]) -> None:
        self._device = device
        self._send_direct = send_direct
        self._neighbours = neighbours
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.forwarded = 0
        self.dropped = 0

    def send(self, to: str, kind: str, payload: dict[str, Any]) -> bool:
        """Send a signal of this device towards `to`; True if some neighbour took it."""
        frame = SignalFrame(secrets.token_urlsafe(12), to, kind, payload)
        try:
            text = frame.encode()
        except FrameTooLarge as exc:
            log.warning("%s for %s not relayed: %s", kind, to[:8], exc)
            return False
        if self._send_direct(to, text):
            return True
        sent = [n for n in self._neighbours() if n != to and self._send_direct(n, text)]
        if not sent:
            log.debug("no path for a %s to %s", kind, to[:8])
        return bool(sent)

    def receive(self, via: Sender, frame: SignalFrame) -> SignalFrame | None:
        """Handle a frame that arrived from `via` (the authenticated other end of a path).

        A frame for this device comes back, with its sender set, unless a copy was seen
        before; a frame its author sent for someone else is forwarded; a forwarded frame for
        someone else is dropped (relays are one hop).
        """
        if frame.to == self._device:
            if frame.id in self._seen:
                return None
            self._seen[frame.id] = None
            while len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            return frame if frame.sender is not None else frame.forwarded(via)
        if frame.sender is not None or frame.to == via.device:
            self.dropped += 1
            return None
        try:
            text = frame.forwarded(via).encode()
        except FrameTooLarge:
            self.dropped += 1
            return None
        if self._send_direct(frame.to, text):
            self.forwarded += 1
        else:
            self.dropped += 1
        return None
