from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    BadSignature,
    DeviceKey,
    InvalidEnvelope,
    b64decode,
    b64encode,
    device_id_for,
    load_public_key,
    verify_signature,
)

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))
RFC8032_KEY = VECTORS["key"]
RFC8032_EMPTY_MESSAGE_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_b64encode_is_urlsafe_without_padding() -> None:
    assert b64encode(b"\xfb\xff") == "-_8"


def test_b64decode_accepts_missing_padding() -> None:
    assert b64decode("-_8") == b"\xfb\xff"


def test_b64decode_accepts_correct_padding() -> None:
    assert b64decode("-_8=") == b"\xfb\xff"


@pytest.mark.parametrize(
    "text",
    [
        "+/8",  # standard alphabet
        "a b",
        "!!!!",
        "A",  # no byte string encodes to one character
        "-_8==",  # too much padding
        "AA=",  # too little padding
        "=AA",
        "AB",  # non-zero trailing bits: "AA" is the one encoding of b"\x00"
        "é",
    ],
)
def test_b64decode_refuses_anything_but_canonical_base64url(text: str) -> None:
    with pytest.raises(ValueError):
        b64decode(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_base64url_round_trips(data: bytes) -> None:
    assert b64decode(b64encode(data)) == data


def test_key_from_rfc8032_vector_has_the_published_public_key() -> None:
    key = DeviceKey.from_private_bytes(bytes.fromhex(RFC8032_KEY["private_hex"]))
    assert key.public_bytes().hex() == RFC8032_KEY["public_hex"]
    assert key.public_key_b64 == RFC8032_KEY["public_b64"]


def test_signature_matches_rfc8032_vector() -> None:
    key = DeviceKey.from_private_bytes(bytes.fromhex(RFC8032_KEY["private_hex"]))
    assert key.sign(b"") == RFC8032_EMPTY_MESSAGE_SIG


def test_device_id_is_first_32_hex_digits_of_sha256_of_public_key() -> None:
    public = bytes.fromhex(RFC8032_KEY["public_hex"])
    assert device_id_for(public) == RFC8032_KEY["device_id"]
    assert device_id_for(public) == "21fe31dfa154a261626bf854046fd227"


def test_device_id_of_wrong_length_key_is_refused() -> None:
    with pytest.raises(ValueError):
        device_id_for(b"\x00" * 31)


def test_private_key_round_trips_through_raw_bytes() -> None:
    key = DeviceKey.generate()
    restored = DeviceKey.from_private_bytes(key.private_bytes())
    assert len(key.private_bytes()) == 32
    assert restored.public_bytes() == key.public_bytes()
    assert restored.device_id == key.device_id


def test_generated_keys_differ() -> None:
    assert DeviceKey.generate().device_id != DeviceKey.generate().device_id


def test_device_id_property_is_derived_from_public_key() -> None:
    key = DeviceKey.generate()
    assert len(key.public_bytes()) == 32
    assert key.device_id == device_id_for(key.public_bytes())


def test_private_key_of_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        DeviceKey.from_private_bytes(b"\x01" * 33)


def test_key_repr_does_not_show_the_private_key() -> None:
    key = DeviceKey.from_private_bytes(bytes.fromhex(RFC8032_KEY["private_hex"]))
    assert RFC8032_KEY["private_hex"] not in repr(key)
    assert key.device_id in repr(key)


def test_public_key_loads_from_base64url() -> None:
    key = load_public_key(RFC8032_KEY["public_b64"])
    assert key.public_bytes_raw().hex() == RFC8032_KEY["public_hex"]


@pytest.mark.parametrize(
    "text", ["", "not base64!", b64encode(b"\x01" * 31), b64encode(b"\x01" * 33)]
)
def test_malformed_public_key_is_refused(text: str) -> None:
    with pytest.raises(InvalidEnvelope, match="public key is malformed"):
        load_public_key(text)


def test_signature_verifies_with_the_signing_key() -> None:
    key = DeviceKey.generate()
    verify_signature(key.public_key_b64, key.sign(b"data"), b"data")


def test_signature_over_other_data_is_rejected() -> None:
    key = DeviceKey.generate()
    with pytest.raises(BadSignature):
        verify_signature(key.public_key_b64, key.sign(b"data"), b"date")


def test_signature_checked_with_another_key_is_rejected() -> None:
    key, other = DeviceKey.generate(), DeviceKey.generate()
    with pytest.raises(BadSignature):
        verify_signature(other.public_key_b64, key.sign(b"data"), b"data")


def test_signature_of_wrong_length_is_rejected() -> None:
    key = DeviceKey.generate()
    with pytest.raises(BadSignature, match="64 bytes"):
        verify_signature(key.public_key_b64, key.sign(b"data")[:63], b"data")


def test_signature_checked_with_malformed_key_is_rejected() -> None:
    key = DeviceKey.generate()
    with pytest.raises(BadSignature, match="malformed"):
        verify_signature("garbage!", key.sign(b"data"), b"data")
