"""Signal relay frames: one hop, the relay names the sender, everything else refused."""

from __future__ import annotations

import json

import pytest

from protocol import InvalidEnvelope
from protocol.relay import Sender, SignalFrame, is_signal_frame, parse_signal_frame

DEVICE = "a" * 32
OTHER = "b" * 32


def test_a_frame_and_its_forwarded_copy_survive_a_round_trip() -> None:
    frame = SignalFrame("abcdefgh12", DEVICE, "offer", {"sdp": "v=0", "oid": 5})
    assert parse_signal_frame(frame.encode()) == frame
    forwarded = frame.forwarded(Sender("bob", OTHER))
    parsed = parse_signal_frame(forwarded.encode())
    assert parsed == forwarded and parsed.sender == Sender("bob", OTHER)
    assert is_signal_frame(json.loads(frame.encode()))


@pytest.mark.parametrize("obj", [
    {"t": "sig", "id": "short", "to": DEVICE, "kind": "offer", "payload": {}},
    {"t": "sig", "id": "abcdefgh12", "to": "nope", "kind": "offer", "payload": {}},
    {"t": "sig", "id": "abcdefgh12", "to": DEVICE, "kind": "bye", "payload": {}},
    {"t": "sig", "id": "abcdefgh12", "to": DEVICE, "kind": "offer", "payload": []},
    {"t": "sig", "id": "abcdefgh12", "to": DEVICE, "kind": "offer", "payload": {}, "x": 1},
    {"t": "sig", "id": "abcdefgh12", "to": DEVICE, "kind": "offer", "payload": {},
     "from": {"user": "Bob!", "device": OTHER}},
    {"t": "sig", "id": "abcdefgh12", "to": DEVICE, "kind": "offer", "payload": {},
     "from": {"user": "bob"}},
    {"t": "msg"},
])
def test_malformed_relay_frames_are_refused(obj: dict[str, object]) -> None:
    with pytest.raises(InvalidEnvelope):
        parse_signal_frame(json.dumps(obj))
