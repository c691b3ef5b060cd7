"""Many envelopes verified at once (`verify_envelopes`, the catch-up and upload path) give the
very answers `Envelope.verify` gives one by one, whichever library checks the signature."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from protocol import (
    PARALLEL_FROM,
    BadSignature,
    DeviceKey,
    Envelope,
    b64encode,
    check_signatures,
    verify_envelopes,
    verify_signature,
)
from tests.protocol.conftest import fixed_key

EnvelopeFactory = Callable[..., Envelope]
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as threads:
        yield threads


def single(env: Envelope, public_key: str) -> str | None:
    try:
        env.verify(public_key)
    except BadSignature as exc:
        return str(exc)
    return None


def a_batch(make_envelope: EnvelopeFactory, alice: DeviceKey,
            bob: DeviceKey) -> list[tuple[Envelope, str]]:
    """A batch long enough to be spread over the cores, with every kind of refusal in it."""
    pairs = [(make_envelope(seq=i + 1, lamport=i + 1, text=f"message {i}"), alice.public_key_b64)
             for i in range(2 * PARALLEL_FROM)]
    genuine = pairs[5][0]
    pairs[5] = (dataclasses.replace(genuine, text="altered"), alice.public_key_b64)
    pairs[17] = (make_envelope(key=bob, seq=18), alice.public_key_b64)  # another device's key
    forged = b64encode(bob.sign(pairs[30][0].signed_bytes()))
    pairs[30] = (dataclasses.replace(pairs[30][0], sig=forged), alice.public_key_b64)
    pairs[44] = (pairs[44][0], "not a key")
    return pairs


def test_a_forged_envelope_in_a_batch_is_refused_and_the_rest_verify(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey, bob_key: DeviceKey,
    pool: ThreadPoolExecutor,
) -> None:
    problems = verify_envelopes(a_batch(make_envelope, alice_key, bob_key), pool)
    refused = {i: p.code for i, p in enumerate(problems) if p is not None}
    assert refused == {5: "bad_signature", 17: "bad_signature", 30: "bad_signature",
                       44: "bad_signature"}


def test_the_batch_and_one_by_one_give_the_same_answers(
    make_envelope: EnvelopeFactory, alice_key: DeviceKey, bob_key: DeviceKey,
    pool: ThreadPoolExecutor,
) -> None:
    pairs = a_batch(make_envelope, alice_key, bob_key)
    batch = [None if p is None else str(p) for p in verify_envelopes(pairs, pool)]
    assert batch == [single(env, key) for env, key in pairs]
    assert batch == [None if p is None else str(p) for p in verify_envelopes(pairs)]
    assert "has a bad signature" in str(batch[5])
    assert "belongs to device" in str(batch[17])


def test_a_signature_openssl_accepts_and_libsodium_refuses_is_accepted_both_ways(
    pool: ThreadPoolExecutor,
) -> None:
    """Its `R` is the identity point (small order), which only the key's owner can make:
    libsodium refuses it, OpenSSL accepts it, and OpenSSL's rule is the one every receiver
    applied before libsodium came in, so such an envelope is still taken by every path."""
    seed = hashlib.sha256(b"owner of a strange signature").digest()
    key = DeviceKey.from_private_bytes(seed)
    env = Envelope.create(key, room="lobby", author="alice", seq=1, lamport=1, ts=1, text="odd")
    scalar = int.from_bytes(hashlib.sha512(seed).digest()[:32], "little")
    scalar = (scalar & ((1 << 254) - 8)) | (1 << 254)
    identity = b"\x01" + bytes(31)
    challenge = int.from_bytes(hashlib.sha512(
        identity + key.public_bytes() + env.signed_bytes()).digest(), "little") % ED25519_ORDER
    sig = identity + (challenge * scalar % ED25519_ORDER).to_bytes(32, "little")
    odd = dataclasses.replace(env, sig=b64encode(sig))
    odd.verify(key.public_key_b64)
    verify_signature(key.public_key_b64, sig, env.signed_bytes())
    batch = [(odd, key.public_key_b64)] * PARALLEL_FROM
    assert verify_envelopes(batch, pool) == [None] * PARALLEL_FROM


def test_signature_checks_keep_the_order_asked(pool: ThreadPoolExecutor) -> None:
    keys = [fixed_key(f"device {i}") for i in range(3)]
    checks = []
    for i in range(3 * PARALLEL_FROM):
        key, data = keys[i % 3], f"data {i}".encode()
        signature = key.sign(data) if i % 7 else keys[(i + 1) % 3].sign(data)
        checks.append((key.public_key_b64, signature, data))
    problems = check_signatures(checks, pool)
    assert [str(p) for p in problems] == [str(p) for p in check_signatures(checks)]
    assert [i for i, p in enumerate(problems) if p is not None] == [
        i for i in range(3 * PARALLEL_FROM) if i % 7 == 0]
    assert check_signatures([(keys[0].public_key_b64, b"short", b"data")])[0] is not None
