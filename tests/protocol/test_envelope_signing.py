from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol import (
    ENVELOPE_DOMAIN,
    MAX_LAMPORT,
    BadSignature,
    DeviceKey,
    Envelope,
    InvalidEnvelope,
    b64decode,
    b64encode,
    canonical_bytes,
    display_sorted,
    next_lamport,
)

EnvelopeFactory = Callable[..., Envelope]  # the `make_envelope` fixture
VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))


def test_created_envelope_verifies_with_its_device_key(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey
) -> None:
    make_envelope().verify(alice_key.public_key_b64)


def test_created_envelope_names_the_signing_device(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey
) -> None:
    assert make_envelope().device == alice_key.device_id


def test_signature_covers_the_canonical_bytes_of_every_other_field(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey
) -> None:
    env = make_envelope(text="hi", seq=4, lamport=9, ts=5)
    expected = canonical_bytes(
        ENVELOPE_DOMAIN, ["lobby", "alice", alice_key.device_id, 4, 9, 5, "hi"]
    )
    assert env.signed_bytes() == expected
    assert b64decode(env.sig) == alice_key.sign(expected)


def test_envelope_matches_the_published_vector() -> None:
    vector = VECTORS["envelope"]
    key = DeviceKey.from_private_bytes(bytes.fromhex(VECTORS["key"]["private_hex"]))
    env = Envelope.create(key, **vector["fields"])
    assert env.signed_bytes().hex() == vector["signed_bytes_hex"]
    assert env.sig == vector["sig"]
    assert env.to_json() == vector["json"]
    assert Envelope.from_json(vector["json"]) == env
    env.verify(VECTORS["key"]["public_b64"])


def test_create_refuses_invalid_fields_before_signing(make_envelope: EnvelopeFactory) -> None:
    with pytest.raises(InvalidEnvelope, match="'text'"):
        make_envelope(text="   ")
    with pytest.raises(InvalidEnvelope, match="'room'"):
        make_envelope(room="Lobby")
    with pytest.raises(InvalidEnvelope, match="'seq'"):
        make_envelope(seq=0)


def test_envelope_checked_with_another_devices_key_is_rejected(
    make_envelope: EnvelopeFactory, bob_key: DeviceKey
) -> None:
    with pytest.raises(BadSignature, match="belongs to device"):
        make_envelope().verify(bob_key.public_key_b64)


def test_envelope_claiming_another_device_is_rejected(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey, bob_key: DeviceKey
) -> None:
    # Alice signs an envelope that claims to come from Bob's device.
    genuine = make_envelope()
    claimed = dataclasses.replace(genuine, device=bob_key.device_id)
    forged = dataclasses.replace(claimed, sig=b64encode(alice_key.sign(claimed.signed_bytes())))
    with pytest.raises(BadSignature, match="belongs to device"):
        forged.verify(alice_key.public_key_b64)
    with pytest.raises(BadSignature, match="bad signature"):
        forged.verify(bob_key.public_key_b64)


def test_envelope_with_altered_text_is_rejected(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey
) -> None:
    altered = dataclasses.replace(make_envelope(text="pay alice"), text="pay mallory")
    with pytest.raises(BadSignature):
        altered.verify(alice_key.public_key_b64)


def test_envelope_checked_with_malformed_key_is_rejected(make_envelope: EnvelopeFactory) -> None:
    with pytest.raises(BadSignature, match="malformed"):
        make_envelope().verify("not a key")


def test_bad_signature_carries_its_code(make_envelope: EnvelopeFactory, bob_key: DeviceKey) -> None:
    with pytest.raises(BadSignature) as info:
        make_envelope().verify(bob_key.public_key_b64)
    assert info.value.code == "bad_signature"


def test_id_is_device_and_seq(make_envelope: EnvelopeFactory, alice_key: DeviceKey) -> None:
    assert make_envelope(seq=12).id == f"{alice_key.device_id}:12"


def test_order_key_is_lamport_device_seq(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey
) -> None:
    assert make_envelope(seq=2, lamport=7).order_key == (7, alice_key.device_id, 2)


def test_display_order_is_lamport_then_device_then_seq(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey, bob_key: DeviceKey
) -> None:
    low, high = sorted([alice_key, bob_key], key=lambda key: key.device_id)
    late = make_envelope(low, seq=1, lamport=5)
    tie_low = make_envelope(low, seq=2, lamport=3)
    tie_high = make_envelope(high, seq=1, lamport=3)
    early = make_envelope(high, seq=2, lamport=1)
    assert display_sorted([late, tie_high, early, tie_low]) == [early, tie_low, tie_high, late]


def test_display_order_ignores_the_authors_clock(make_envelope: EnvelopeFactory) -> None:
    first = make_envelope(seq=1, lamport=1, ts=9_999)
    second = make_envelope(seq=2, lamport=2, ts=1)
    assert display_sorted([second, first]) == [first, second]


def test_same_content_means_every_field_equal(make_envelope: EnvelopeFactory) -> None:
    env = make_envelope()
    assert env.same_content(Envelope.from_json(env.to_json()))
    assert not env.same_content(make_envelope(text="other"))


def test_envelopes_are_immutable(make_envelope: EnvelopeFactory) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_envelope().text = "changed"  # type: ignore[misc]


def test_next_lamport_is_one_past_the_highest_seen() -> None:
    assert next_lamport(0) == 1
    assert next_lamport(41) == 42
    assert next_lamport(MAX_LAMPORT - 1) == MAX_LAMPORT


@pytest.mark.parametrize("seen_max", [-1, MAX_LAMPORT])
def test_next_lamport_refuses_values_no_envelope_can_follow(seen_max: int) -> None:
    with pytest.raises(ValueError):
        next_lamport(seen_max)
