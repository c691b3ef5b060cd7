"""Room tags on channel frames: one data channel per pair of devices carries every room the two
share, so each frame but ping and pong names its room, first (protocol.channel)."""

from __future__ import annotations

import pytest

from protocol import MAX_FRAME_BYTES, FrameTooLarge, InvalidEnvelope
from protocol.channel import (
    AckFrame,
    PingFrame,
    is_control_frame,
    parse_channel_frame,
    parse_room_frame,
    tag_room,
)
from protocol.limits import ROOM_TAG_BYTES


def test_a_tagged_frame_names_its_room_first_and_parses_back_to_the_frame() -> None:
    text = tag_room(AckFrame(("a:1",)).encode(), "lobby")
    assert text == '{"room":"lobby","t":"ack","ids":["a:1"]}'
    assert parse_room_frame(text) == ("lobby", AckFrame(("a:1",)))
    assert not is_control_frame(text)


@pytest.mark.parametrize(("text", "reason"), [
    ('{"t":"ack","ids":[]}', "needs 'room'"),
    ('{"room":"Not Normal","t":"ack","ids":[]}', "needs 'room'"),
    ('{"room":7,"t":"ack","ids":[]}', "needs 'room'"),
    ('{"room":"lobby","t":"ping","n":1,"at":1.0}', "belongs to the channel"),
    ('{"room":"lobby","t":"ack","ids":[],"x":1}', "ack frame"),
    ('["room"]', "JSON object"),
])
def test_a_frame_without_a_proper_room_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidEnvelope, match=reason):
        parse_room_frame(text)


def test_ping_and_pong_stay_untagged_channel_frames() -> None:
    text = PingFrame(3, 1.5).encode()
    assert is_control_frame(text)
    assert parse_channel_frame(text) == PingFrame(3, 1.5)


def test_the_tag_fits_in_the_room_packed_frames_leave_free() -> None:
    longest = "é" * 64  # a room name of MAX_ROOM_CHARS two-byte characters
    overhead = len(tag_room("{}", longest).encode()) - len(b"{}")
    assert overhead <= ROOM_TAG_BYTES
    near_full = '{"t":"ack","ids":["' + "a" * (MAX_FRAME_BYTES - 30) + '"]}'
    with pytest.raises(FrameTooLarge):
        tag_room(near_full, "lobby")
