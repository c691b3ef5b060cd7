"""Property-based fuzzing of every parser a peer or a client reaches: whatever it is given, it
returns a value it vouches for or refuses with a ProtocolError (protocol/errors.py) that has a
code and a reason; nothing else ever escapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol import Envelope, ProtocolError, VersionVector, parse_frame
from protocol.errors import InvalidName
from protocol.limits import MAX_LAMPORT, MAX_SEQ
from protocol.links import parse_links_frame
from protocol.names import (
    is_normalized_room,
    is_normalized_username,
    normalize_room,
    normalize_username,
)
from protocol.paging import parse_order_token
from protocol.relay import parse_signal_frame
from protocol.rendezvous import parse_handshake_frame
from protocol.strict_json import loads
from protocol.sync import parse_sync_frame
from signaling.packets import JsonPacket, PacketRefused
from tests.hostile.fuzz_corpus import FRAMES, JSON_VALUES, NAMES, TEXTS, TOKENS, fuzz


def refused_or_parsed(parse: Callable[[Any], Any], data: Any) -> Any:
    """Run a parser; a refusal must be a ProtocolError with a code and a reason."""
    try:
        return parse(data)
    except ProtocolError as exc:
        assert exc.code and str(exc), (data, exc)
        return exc


FRAME_PARSERS: list[Callable[[Any], Any]] = [
    parse_frame, parse_sync_frame, parse_signal_frame, parse_handshake_frame,
    Envelope.from_json, loads,
]


@fuzz(FRAMES)
def test_frame_parsers_refuse_with_a_reason(data: str | bytes) -> None:
    for parse in FRAME_PARSERS:
        refused_or_parsed(parse, data)


@fuzz(JSON_VALUES)
def test_envelopes_vectors_and_link_reports_from_any_json_refuse_with_a_reason(
        value: Any) -> None:
    for parse in (Envelope.from_dict, VersionVector.from_dict, parse_links_frame):
        refused_or_parsed(parse, value)


@fuzz(TEXTS)
def test_a_parsed_sync_frame_encodes_back_to_the_same_frame(text: str) -> None:
    frame = refused_or_parsed(parse_sync_frame, text)
    if not isinstance(frame, ProtocolError):
        assert parse_sync_frame(frame.encode()) == frame


@fuzz(NAMES)
def test_names_normalise_once_or_refuse_with_a_reason(raw: str) -> None:
    for normalize, is_normal in ((normalize_username, is_normalized_username),
                                 (normalize_room, is_normalized_room)):
        try:
            name = normalize(raw)
        except InvalidName as exc:
            assert str(exc)
            continue
        assert is_normal(name) and normalize(name) == name


@fuzz(TOKENS)
def test_page_tokens_parse_within_the_limits_or_not_at_all(raw: str) -> None:
    key = parse_order_token(raw)
    if key is not None:
        lamport, device, seq = key
        assert 0 <= lamport <= MAX_LAMPORT and 0 <= seq <= MAX_SEQ and len(device) <= 32


@fuzz(TEXTS)
def test_socketio_packets_decode_or_are_refused_with_a_reason(text: str) -> None:
    for packet in (text, "2" + text, "0" + text, "3" + text, "21" + text):
        try:
            JsonPacket(encoded_packet=packet)
        except PacketRefused as exc:
            assert str(exc)
