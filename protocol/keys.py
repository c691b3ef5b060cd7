"""Device keys (Ed25519), their ids, and the base64url text form used for keys and signatures.

Signatures are checked in one place, `check_signatures` (and `verify_signature`, one check):
libsodium (PyNaCl) checks each first, about twice as fast as OpenSSL here and releasing the GIL,
so the caller may hand a thread pool in to spread a batch over the cores (this package starts
no thread itself). The rule stays OpenSSL's, through
`cryptography`: libsodium is stricter (it also refuses small-order keys and small-order `R`,
which OpenSSL accepts), never laxer, so what it accepts OpenSSL accepts, and what it refuses is
checked again by OpenSSL, whose answer stands. Every receiver thus takes exactly the envelopes it
took before, and a key's owner cannot make one that some receivers take and others refuse.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from .errors import BadSignature, InvalidEnvelope

if TYPE_CHECKING:
    from concurrent.futures import Executor

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")

KEY_BYTES = 32
SIGNATURE_BYTES = 64

PARALLEL_FROM = 32
"""Batches of at least this many signatures are spread over a pool; smaller ones are checked
in the calling thread, where handing them over (tens of µs) would cost more than it saves. A
peer's sync batch, bounded by MAX_FRAME_BYTES, holds about 50 chat lines."""
_CHUNKS = 8
"""A batch is cut into this many parts at most, so the pool's threads share it evenly."""


def b64encode(b: bytes) -> str:
    """Encode bytes as unpadded base64url, the one text form of keys and signatures on the wire."""
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def b64decode(s: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError on anything else.

    Only the canonical encoding of some bytes is accepted (standard-alphabet "+" and "/", wrong
    padding and non-zero trailing bits are refused), so one value has exactly one text form.
    """
    if not isinstance(s, str) or not _B64URL.fullmatch(s):
        raise ValueError("not base64url: only A-Z, a-z, 0-9, '-' and '_' are allowed")
    body = s.rstrip("=")
    if len(body) % 4 == 1:
        raise ValueError("not base64url: impossible length")
    padded = body + "=" * (-len(body) % 4)
    if s not in (body, padded):
        raise ValueError("not base64url: wrong padding")
    data = base64.urlsafe_b64decode(padded)
    if b64encode(data) != body:
        raise ValueError("not base64url: non-canonical trailing bits")
    return data


def device_id_for(public_key: bytes) -> str:
    """Return the device id of a raw Ed25519 public key: the first 32 hex digits of its SHA-256."""
    if len(public_key) != KEY_BYTES:
        raise ValueError(f"an Ed25519 public key has {KEY_BYTES} bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).hexdigest()[:32]


class DeviceKey:
    """A device's Ed25519 private key; it signs the device's envelopes and names the device."""

    __slots__ = ("_private", "_public_raw")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public_raw = private_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> DeviceKey:
        """Make a fresh random key, as a device does on first start."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw32: bytes) -> DeviceKey:
        """Restore a key from the 32 raw bytes that `private_bytes()` returned."""
        if len(raw32) != KEY_BYTES:
            raise ValueError(f"an Ed25519 private key has {KEY_BYTES} bytes, got {len(raw32)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw32))

    def private_bytes(self) -> bytes:
        """Return the raw 32-byte private key, for the device's key file (keep it mode 0600)."""
        return self._private.private_bytes_raw()

    def public_bytes(self) -> bytes:
        """Return the raw 32-byte public key."""
        return self._public_raw

    @property
    def public_key_b64(self) -> str:
        """The public key as unpadded base64url, as registered with the server."""
        return b64encode(self._public_raw)

    @property
    def device_id(self) -> str:
        """The id of this device, derived from its public key."""
        return device_id_for(self._public_raw)

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `data`."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"DeviceKey(device_id={self.device_id!r})"


def load_public_key(b64: str) -> Ed25519PublicKey:
    """Parse a base64url Ed25519 public key, raising InvalidEnvelope if it is malformed.

    Parsed keys are remembered (a room has few devices and each key checks many messages);
    a malformed key is not, so it is refused every time."""
    return public_key_and_device(b64)[0]


@lru_cache(maxsize=4096)
def public_key_and_device(b64: str) -> tuple[Ed25519PublicKey, str]:
    """The parsed key and the id of the device it belongs to (see `load_public_key`)."""
    key = _parse_public_key(b64)
    return key, device_id_for(key.public_bytes_raw())


def _parse_public_key(b64: str) -> Ed25519PublicKey:
    try:
        raw = b64decode(b64)
    except ValueError as exc:
        raise InvalidEnvelope(f"public key is malformed: {exc}") from exc
    if len(raw) != KEY_BYTES:
        raise InvalidEnvelope(
            f"public key is malformed: an Ed25519 key has {KEY_BYTES} bytes, got {len(raw)}"
        )
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise InvalidEnvelope(f"public key is malformed: {exc}") from exc


def verify_signature(public_key_b64: str, signature: bytes, data: bytes) -> None:
    """Raise BadSignature unless `signature` is the key's signature of `data`.

    A malformed key or signature is reported as BadSignature too: either way nothing is proven.
    """
    problem = check_signatures([(public_key_b64, signature, data)])[0]
    if problem is not None:
        raise problem


def check_signatures(checks: Sequence[tuple[str, bytes, bytes]],
                     pool: Executor | None = None) -> list[BadSignature | None]:
    """Check many (public key, signature, signed bytes) at once: for each, None if the signature
    is the key's signature of the bytes, else the BadSignature `verify_signature` raises.

    With a thread `pool`, a batch of PARALLEL_FROM or more is shared between the calling thread
    and the pool's threads, each check releasing the GIL; the answers come in the order asked."""
    problems: list[BadSignature | None] = [None] * len(checks)
    ready: list[tuple[int, bytes, Ed25519PublicKey, bytes, bytes]] = []
    for i, (public_key_b64, signature, data) in enumerate(checks):
        try:
            key = load_public_key(public_key_b64)
        except InvalidEnvelope as exc:
            problems[i] = BadSignature(f"cannot check the signature: {exc}")
            continue
        if len(signature) != SIGNATURE_BYTES:
            problems[i] = BadSignature(
                f"a signature has {SIGNATURE_BYTES} bytes, got {len(signature)}")
            continue
        ready.append((i, _raw_key(public_key_b64), key, signature, data))
    if pool is None or len(ready) < PARALLEL_FROM:
        bad = _refused(ready)
    else:
        size = max(PARALLEL_FROM // 2, -(-len(ready) // _CHUNKS))
        chunks = [ready[start:start + size] for start in range(0, len(ready), size)]
        others = [pool.submit(_refused, chunk) for chunk in chunks[1:]]
        bad = _refused(chunks[0])
        for other in others:
            bad += other.result()
    for i in bad:
        problems[i] = BadSignature("the signature does not match the signed data and key")
    return problems


def _refused(checks: Sequence[tuple[int, bytes, Ed25519PublicKey, bytes, bytes]]) -> list[int]:
    """The indexes of the checks whose signature is not valid (see the module docstring)."""
    bad: list[int] = []
    for i, raw, key, signature, data in checks:
        try:
            crypto_sign_open(signature + data, raw)  # releases the GIL
            continue
        except BadSignatureError:
            pass
        try:
            key.verify(signature, data)
        except InvalidSignature:
            bad.append(i)
    return bad


@lru_cache(maxsize=4096)
def _raw_key(b64: str) -> bytes:
    return b64decode(b64)
