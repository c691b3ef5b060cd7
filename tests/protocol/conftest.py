"""Shared fixtures for the protocol tests: a few fixed device keys and an envelope factory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from protocol import DeviceKey, Envelope


def fixed_key(name: str) -> DeviceKey:
    """A deterministic key, so failures reproduce and no test pays for randomness."""
    return DeviceKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


@pytest.fixture(scope="session")
def alice_key() -> DeviceKey:
    return fixed_key("alice's laptop")


@pytest.fixture(scope="session")
def bob_key() -> DeviceKey:
    return fixed_key("bob's phone")


@pytest.fixture(scope="session")
def make_envelope(alice_key: DeviceKey) -> Callable[..., Envelope]:
    """Build a signed envelope in room "lobby"; any field can be overridden, the key too."""

    def make(key: DeviceKey = alice_key, **fields: object) -> Envelope:
        values: dict[str, object] = {
            "room": "lobby",
            "author": "alice",
            "seq": 1,
            "lamport": 1,
            "ts": 1_700_000_000_000,
            "text": "hello",
        }
        values.update(fields)
        return Envelope.create(key, **values)  # type: ignore[arg-type]

    return make
