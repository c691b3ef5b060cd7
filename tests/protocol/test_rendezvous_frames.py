"""Rendezvous handshake frames and the bytes each side signs."""

from __future__ import annotations

import pytest

from protocol import (
    CHALLENGE_DOMAIN,
    BadSignature,
    DeviceKey,
    InvalidEnvelope,
    b64encode,
    canonical_bytes,
    verify_signature,
)
from protocol.rendezvous import (
    Challenge,
    Hello,
    Refused,
    Welcome,
    dialer_proof_bytes,
    is_address,
    listener_proof_bytes,
    parse_handshake_frame,
)

NONCE = b64encode(bytes(range(32)))
SIG = b64encode(bytes(64))
DEVICE = "0" * 32
OTHER = "f" * 32


def test_each_frame_survives_a_round_trip() -> None:
    frames = [Challenge("lobby", DEVICE, NONCE),
              Hello("alice", DEVICE, "127.0.0.1:7000", NONCE, SIG),
              Hello("alice", DEVICE, "", NONCE, SIG), Welcome(SIG), Refused("no")]
    for frame in frames:
        assert parse_handshake_frame(frame.encode()) == frame


def test_proofs_are_bound_to_role_room_both_devices_and_the_nonce() -> None:
    dialer = dialer_proof_bytes("lobby", DEVICE, OTHER, NONCE, "127.0.0.1:7000")
    assert dialer == canonical_bytes(
        CHALLENGE_DOMAIN, ["dialer", "lobby", DEVICE, OTHER, NONCE, "127.0.0.1:7000"])
    listener = listener_proof_bytes("lobby", OTHER, DEVICE, NONCE)
    assert listener == canonical_bytes(CHALLENGE_DOMAIN, ["listener", "lobby", OTHER, DEVICE,
                                                          NONCE])
    variants = {dialer, listener,
                dialer_proof_bytes("other", DEVICE, OTHER, NONCE, "127.0.0.1:7000"),
                dialer_proof_bytes("lobby", OTHER, DEVICE, NONCE, "127.0.0.1:7000"),
                dialer_proof_bytes("lobby", DEVICE, OTHER, NONCE, ""),
                listener_proof_bytes("lobby", DEVICE, OTHER, NONCE)}
    assert len(variants) == 6


def test_a_signature_for_one_listener_does_not_verify_for_another() -> None:
    key = DeviceKey.generate()
    sig = key.sign(dialer_proof_bytes("lobby", key.device_id, OTHER, NONCE, ""))
    with pytest.raises(BadSignature):
        verify_signature(key.public_key_b64, sig,
                         dialer_proof_bytes("lobby", key.device_id, DEVICE, NONCE, ""))


@pytest.mark.parametrize("frame", [
    '{"t":"challenge","room":"lobby","device":"x","nonce":"' + NONCE + '"}',
    '{"t":"challenge","room":"Lobby!","device":"' + DEVICE + '","nonce":"' + NONCE + '"}',
    '{"t":"challenge","room":"lobby","device":"' + DEVICE + '","nonce":"short"}',
    '{"t":"hello","user":"alice","device":"' + DEVICE + '","rendezvous":"nope",'
    '"nonce":"' + NONCE + '","sig":"' + SIG + '"}',
    '{"t":"hello","user":"alice","device":"' + DEVICE + '","rendezvous":"",'
    '"nonce":"' + NONCE + '","sig":"abc"}',
    '{"t":"welcome","sig":"' + SIG + '","extra":1}',
    '{"t":"refused","reason":5}',
    '{"t":"what"}',
    '[]',
])
def test_malformed_frames_are_refused(frame: str) -> None:
    with pytest.raises(InvalidEnvelope):
        parse_handshake_frame(frame)


@pytest.mark.parametrize(("address", "ok"), [
    ("127.0.0.1:7000", True), ("[::1]:7000", True), ("host.example:1", True),
    ("127.0.0.1", False), ("127.0.0.1:0", False), ("127.0.0.1:70000", False),
    ("http://x:1", False), (":80", False), ("a b:80", False),
])
def test_rendezvous_addresses_are_host_and_port(address: str, ok: bool) -> None:
    assert is_address(address) is ok
