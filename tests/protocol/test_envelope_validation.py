from __future__ import annotations

import json

import pytest

from protocol import (
    MAX_FRAME_BYTES,
    MAX_LAMPORT,
    MAX_ROOM_CHARS,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    MAX_TEXT_CHARS,
    MAX_TS,
    MAX_USERNAME_CHARS,
    DeviceKey,
    Envelope,
    FrameTooLarge,
    InvalidEnvelope,
    ProtocolError,
    b64encode,
)

DEVICE = "0123456789abcdef0123456789abcdef"
SIG = b64encode(bytes(range(64)))


def wire(**changes: object) -> dict[str, object]:
    """A structurally valid envelope dict (unsigned content does not matter here) with changes."""
    obj: dict[str, object] = {
        "room": "lobby",
        "author": "alice",
        "device": DEVICE,
        "seq": 1,
        "lamport": 1,
        "ts": 0,
        "text": "hello",
        "sig": SIG,
    }
    obj.update(changes)
    return obj


def rejects(field: str, value: object) -> None:
    with pytest.raises(InvalidEnvelope, match=repr(field)):
        Envelope.from_dict(wire(**{field: value}))


def test_valid_envelope_dict_is_accepted_and_round_trips() -> None:
    env = Envelope.from_dict(wire())
    assert env.to_dict() == wire()
    assert list(env.to_dict()) == [
        "room",
        "author",
        "device",
        "seq",
        "lamport",
        "ts",
        "text",
        "sig",
    ]


def test_envelope_with_extra_key_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="unexpected 'id'"):
        Envelope.from_dict(wire(id="x"))


def test_envelope_with_missing_key_is_rejected() -> None:
    obj = wire()
    del obj["lamport"]
    with pytest.raises(InvalidEnvelope, match="missing 'lamport'"):
        Envelope.from_dict(obj)


@pytest.mark.parametrize("obj", [None, [], "envelope", 7, [("room", "lobby")]])
def test_envelope_that_is_not_an_object_is_rejected(obj: object) -> None:
    with pytest.raises(InvalidEnvelope, match="must be a JSON object"):
        Envelope.from_dict(obj)


@pytest.mark.parametrize("field", ["seq", "lamport", "ts"])
@pytest.mark.parametrize("value", [True, False, 1.0, "1", None])
def test_integer_field_of_another_type_is_rejected(field: str, value: object) -> None:
    rejects(field, value)


@pytest.mark.parametrize("field", ["room", "author", "device", "text", "sig"])
@pytest.mark.parametrize("value", [1, None, b"x", ["x"]])
def test_string_field_of_another_type_is_rejected(field: str, value: object) -> None:
    rejects(field, value)


@pytest.mark.parametrize("room", ["Lobby", " lobby", "lob by", "", "r" * (MAX_ROOM_CHARS + 1)])
def test_room_not_in_normal_form_is_rejected(room: str) -> None:
    rejects("room", room)


def test_room_of_maximum_length_is_accepted() -> None:
    Envelope.from_dict(wire(room="r" * MAX_ROOM_CHARS))


@pytest.mark.parametrize(
    "author", ["Alice", "ＡＬＩＣＥ", "al ice", "", "a" * (MAX_USERNAME_CHARS + 1)]
)
def test_author_not_in_normal_form_is_rejected(author: str) -> None:
    rejects("author", author)


def test_author_of_maximum_length_is_accepted() -> None:
    Envelope.from_dict(wire(author="a" * MAX_USERNAME_CHARS))


@pytest.mark.parametrize(
    "device", [DEVICE.upper(), DEVICE[:-1], DEVICE + "0", "g" * 32, " " + DEVICE[1:], DEVICE + "\n"]
)
def test_device_that_is_not_32_lowercase_hex_digits_is_rejected(device: str) -> None:
    rejects("device", device)


@pytest.mark.parametrize(
    ("field", "low", "high"), [("seq", 1, MAX_SEQ), ("lamport", 1, MAX_LAMPORT)]
)
def test_counter_at_its_bounds_is_accepted(field: str, low: int, high: int) -> None:
    assert Envelope.from_dict(wire(**{field: low})).to_dict()[field] == low
    assert Envelope.from_dict(wire(**{field: high})).to_dict()[field] == high


@pytest.mark.parametrize(
    ("field", "low", "high"), [("seq", 1, MAX_SEQ), ("lamport", 1, MAX_LAMPORT)]
)
def test_counter_just_outside_its_bounds_is_rejected(field: str, low: int, high: int) -> None:
    rejects(field, low - 1)
    rejects(field, high + 1)


def test_timestamp_from_zero_to_max_is_accepted() -> None:
    Envelope.from_dict(wire(ts=0))
    Envelope.from_dict(wire(ts=MAX_TS))


def test_timestamp_just_outside_its_bounds_is_rejected() -> None:
    rejects("ts", -1)
    rejects("ts", MAX_TS + 1)


def test_max_integers_are_javascript_safe_integers() -> None:
    assert MAX_SEQ == MAX_LAMPORT == MAX_TS == 9_007_199_254_740_991


def test_empty_text_is_rejected() -> None:
    rejects("text", "")


def test_text_of_exactly_max_characters_is_accepted() -> None:
    Envelope.from_dict(wire(text="x" * MAX_TEXT_CHARS))


def test_text_one_character_over_the_maximum_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="at most 4000 characters"):
        Envelope.from_dict(wire(text="x" * (MAX_TEXT_CHARS + 1)))


def test_text_of_exactly_max_utf8_bytes_is_accepted() -> None:
    Envelope.from_dict(wire(text="😀" * (MAX_TEXT_BYTES // 4)))
    Envelope.from_dict(wire(text="€" * MAX_TEXT_CHARS))  # 3 bytes each: both limits exactly


def test_text_one_utf8_byte_over_the_maximum_is_rejected() -> None:
    text = "😀" * 2999 + "x" * 5  # 11996 + 5 bytes, only 3004 characters
    assert len(text.encode()) == MAX_TEXT_BYTES + 1
    with pytest.raises(InvalidEnvelope, match="at most 12000 bytes"):
        Envelope.from_dict(wire(text=text))


def test_text_with_lone_surrogate_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="lone surrogate"):
        Envelope.from_dict(wire(text="hi \ud83d there"))


@pytest.mark.parametrize(
    "control", ["\x00", "\x01", "\x07", "\x0b", "\x0c", "\r", "\x1b", "\x1f", "\x7f"]
)
def test_text_with_control_character_is_rejected(control: str) -> None:
    with pytest.raises(InvalidEnvelope, match="control character"):
        Envelope.from_dict(wire(text=f"a{control}b"))


def test_text_with_newline_and_tab_is_accepted() -> None:
    assert Envelope.from_dict(wire(text="line one\n\tline two")).text == "line one\n\tline two"


@pytest.mark.parametrize("blank", [" ", "\n", "\t \n", "\u00a0", "\u3000", "\u2028"])
def test_text_of_only_whitespace_is_rejected(blank: str) -> None:
    with pytest.raises(InvalidEnvelope, match="only whitespace"):
        Envelope.from_dict(wire(text=blank))


def test_text_with_whitespace_around_words_is_kept_as_is() -> None:
    assert Envelope.from_dict(wire(text="  hi  ")).text == "  hi  "


@pytest.mark.parametrize(
    "sig",
    [
        b64encode(bytes(63)),
        b64encode(bytes(65)),
        b64encode(bytes(64)) + "==",  # padded: a second spelling of the same signature
        "!" * 86,
        b64encode(b"\xff" * 64).replace("_", "/"),  # standard alphabet
        "",
    ],
)
def test_sig_that_is_not_unpadded_base64url_of_64_bytes_is_rejected(sig: str) -> None:
    rejects("sig", sig)


def test_sig_with_non_canonical_trailing_bits_is_rejected() -> None:
    canonical = b64encode(bytes(64))  # ends in "AA"; the last character carries 4 unused bits
    rejects("sig", canonical[:-1] + "B")


def test_invalid_envelope_is_a_protocol_error_with_its_code() -> None:
    with pytest.raises(ProtocolError) as info:
        Envelope.from_dict(wire(seq=0))
    assert info.value.code == "invalid_envelope"
    assert "'seq'" in str(info.value)


def test_constructing_an_envelope_directly_validates_it() -> None:
    with pytest.raises(InvalidEnvelope, match="'text'"):
        Envelope("lobby", "alice", DEVICE, 1, 1, 0, "", SIG)


def test_envelope_json_round_trips() -> None:
    env = Envelope.from_dict(wire(text="grüße 👋\n"))
    assert Envelope.from_json(env.to_json()) == env
    assert Envelope.from_json(env.to_json().encode()) == env


def test_envelope_json_is_compact_and_keeps_non_ascii() -> None:
    text = Envelope.from_dict(wire(text="grüße")).to_json()
    assert "grüße" in text
    assert ": " not in text and ", " not in text


def test_bad_json_is_rejected_as_invalid_envelope() -> None:
    with pytest.raises(InvalidEnvelope, match="not valid JSON"):
        Envelope.from_json('{"room": ')


def test_json_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="must be a JSON object"):
        Envelope.from_json("[1, 2]")


def test_json_with_repeated_key_is_rejected() -> None:
    text = json.dumps(wire())[:-1] + ', "seq": 2}'
    with pytest.raises(InvalidEnvelope, match="more than once"):
        Envelope.from_json(text)


def test_json_with_nan_is_rejected() -> None:
    text = json.dumps(wire()).replace('"ts": 0', '"ts": NaN')
    with pytest.raises(InvalidEnvelope, match="NaN"):
        Envelope.from_json(text)


def test_bytes_that_are_not_utf8_are_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="UTF-8"):
        Envelope.from_json(json.dumps(wire()).encode().replace(b"hello", b"hell\xff"))


def test_deeply_nested_json_is_rejected_not_crashed_on() -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_json("[" * 8000 + "]" * 8000)


def padded_to(size: int) -> str:
    text = json.dumps(wire(), separators=(",", ":"))
    return text[:-1] + " " * (size - len(text.encode())) + "}"


def test_frame_of_exactly_max_bytes_is_parsed() -> None:
    frame = padded_to(MAX_FRAME_BYTES)
    assert len(frame.encode()) == MAX_FRAME_BYTES
    assert Envelope.from_json(frame) == Envelope.from_dict(wire())
    assert Envelope.from_json(frame.encode()) == Envelope.from_dict(wire())


def test_frame_one_byte_over_max_is_too_large() -> None:
    frame = padded_to(MAX_FRAME_BYTES + 1)
    with pytest.raises(FrameTooLarge) as info:
        Envelope.from_json(frame)
    assert info.value.code == "too_large"
    with pytest.raises(FrameTooLarge):
        Envelope.from_json(frame.encode())


def test_frame_size_counts_utf8_bytes_not_characters() -> None:
    frame = padded_to(MAX_FRAME_BYTES - 100)[:-1] + "é" * 51 + "}"  # 102 bytes in 51 characters
    assert len(frame) < MAX_FRAME_BYTES < len(frame.encode())
    with pytest.raises(FrameTooLarge):
        Envelope.from_json(frame)


def test_huge_frame_is_refused_before_parsing() -> None:
    with pytest.raises(FrameTooLarge):
        Envelope.from_json("{" * 10_000_000)


def test_largest_valid_envelope_fits_in_one_frame() -> None:
    # JSON doubles a backslash; 4-byte characters are the most bytes per character; together
    # they make the longest JSON text the character and byte limits allow.
    text = "\\" * 1334 + "😀" * 2666
    big_letter = "\U00020000"  # a CJK ideograph: a letter of 4 UTF-8 bytes
    env = Envelope.create(
        DeviceKey.generate(),
        room=big_letter * MAX_ROOM_CHARS,
        author=big_letter * MAX_USERNAME_CHARS,
        seq=MAX_SEQ,
        lamport=MAX_LAMPORT,
        ts=MAX_TS,
        text=text,
    )
    assert len(env.text) == MAX_TEXT_CHARS
    assert len(env.to_json().encode()) <= MAX_FRAME_BYTES
    assert Envelope.from_json(env.to_json()) == env
