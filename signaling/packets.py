"""The Socket.IO packets this server accepts: JSON text only, decoded with the one JSON policy.

The protocol sends no binary data, so binary packets (types 5 and 6, and the attachments that
follow them) are refused before python-socketio would buffer them: it keeps every attachment a
packet announces until the count is reached, with no limit but the count. Any packet that cannot
be decoded (bad type, bad id, data that is not the JSON `protocol.strict_json` accepts, an event
that is not `[name, …]`) is refused too. A refusal is one log line and closes that one
connection; the official clients never send such packets, so only a broken or hostile client
loses its connection."""

from __future__ import annotations

import json
import logging
from typing import Any

import socketio
from socketio.packet import ACK, BINARY_ACK, BINARY_EVENT, CONNECT, DISCONNECT, EVENT, Packet

from protocol.strict_json import InvalidJson
from protocol.strict_json import loads as strict_loads

log = logging.getLogger("gibberish.signaling")

# As the packet's first character: str.isdigit() also accepts "¹", which int() refuses.
_ACCEPTED_TYPES = {str(kind) for kind in (CONNECT, DISCONNECT, EVENT, ACK)}


class PacketRefused(ValueError):
    """A client sent a Socket.IO packet this server does not accept; the message says why."""


class _StrictJson:
    """The JSON module python-socketio calls: strict decoding, compact encoding."""

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        return strict_loads(text)

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)


class JsonPacket(Packet):  # type: ignore[misc]
    """A Socket.IO packet that is JSON text or nothing: decoding raises PacketRefused for a
    binary packet, an attachment, or anything malformed."""

    uses_binary_events = False
    json = _StrictJson

    def __init__(self, packet_type: int = EVENT, data: Any = None, namespace: str | None = None,
                 id: int | None = None, binary: bool | None = None,
                 encoded_packet: Any = None) -> None:
        if encoded_packet is not None and not isinstance(encoded_packet, str):
            raise PacketRefused("binary data is not accepted: this protocol is JSON only")
        if encoded_packet == "":
            raise PacketRefused("empty packet")
        super().__init__(packet_type, data, namespace, id, binary, encoded_packet)

    def decode(self, encoded_packet: str) -> int:
        kind = encoded_packet[:1]
        if kind in (str(BINARY_EVENT), str(BINARY_ACK)):
            raise PacketRefused("binary packets are not accepted: this protocol is JSON only")
        if kind not in _ACCEPTED_TYPES:
            raise PacketRefused(f"unknown packet type {encoded_packet[:1]!r}")
        try:
            count: int = super().decode(encoded_packet)
        except InvalidJson as exc:
            raise PacketRefused(f"packet data refused: {exc}") from None
        except (ValueError, TypeError, IndexError) as exc:
            raise PacketRefused(f"malformed packet: {exc}") from None
        if count:
            raise PacketRefused("binary attachments are not accepted: this protocol is JSON only")
        self._check_shape()
        return count

    def _check_shape(self) -> None:
        data = self.data
        if self.packet_type == EVENT:
            if not isinstance(data, list) or not data or not isinstance(data[0], str):
                raise PacketRefused("an event packet carries [name, data…]")
        elif self.packet_type == ACK:
            if not isinstance(data, list) or self.id is None:
                raise PacketRefused("an acknowledgement carries an id and a list")
        elif self.packet_type == CONNECT and data is not None and not isinstance(data, dict):
            raise PacketRefused("a connect packet carries an object or nothing")


def refuse_malformed_packets(server: socketio.Server) -> None:
    """Make every packet refusal one log line that closes the connection, instead of a
    traceback from Engine.IO's message handler."""
    handle = server._handle_eio_message

    def guarded(eio_sid: str, data: Any) -> None:
        try:
            handle(eio_sid, data)
        except PacketRefused as exc:
            server._binary_packet.pop(eio_sid, None)
            log.warning("refused a Socket.IO packet from connection %s and closed it: %s",
                        eio_sid, exc)
            server.eio.disconnect(eio_sid)

    server.eio.on("message", guarded)
