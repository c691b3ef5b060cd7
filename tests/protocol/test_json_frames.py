from __future__ import annotations

import pytest

from protocol import MAX_FRAME_BYTES, FrameTooLarge, InvalidEnvelope, encode_frame, parse_frame


def test_frame_round_trips() -> None:
    frame = {"type": "sync", "vector": {"a" * 32: 3}, "text": "grüße"}
    assert parse_frame(encode_frame(frame)) == frame


def test_encoded_frame_is_compact_and_keeps_non_ascii() -> None:
    assert encode_frame({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_encoding_a_frame_over_the_limit_is_refused() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame({"text": "x" * MAX_FRAME_BYTES})


def test_encoding_nan_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_frame({"x": float("nan")})


def test_repeated_key_in_a_nested_object_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="'k' appears more than once"):
        parse_frame('{"outer": {"k": 1, "k": 2}}')


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(constant: str) -> None:
    with pytest.raises(InvalidEnvelope, match="not a JSON number"):
        parse_frame(f'{{"x": {constant}}}')


def test_frame_with_utf8_byte_order_mark_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope):
        parse_frame(b"\xef\xbb\xbf{}")


def test_frame_of_exactly_max_bytes_is_parsed() -> None:
    frame = '"' + "x" * (MAX_FRAME_BYTES - 2) + '"'
    assert parse_frame(frame.encode()) == "x" * (MAX_FRAME_BYTES - 2)


def test_frame_one_byte_over_max_is_too_large() -> None:
    frame = '"' + "x" * (MAX_FRAME_BYTES - 1) + '"'
    with pytest.raises(FrameTooLarge, match="at most 16384 bytes"):
        parse_frame(frame.encode())
