"""Canonical bytes: the exact bytes that get signed, simple enough to rebuild in browser JavaScript.

Layout: utf8(domain), one NUL byte, then per field a 4-byte big-endian length of utf8(field)
followed by those bytes; integers are written as decimal strings. The domain keeps a signature
made for one purpose from being valid for another; the length prefixes keep field boundaries
unambiguous ("ab" + "c" differs from "a" + "bc").
"""

from __future__ import annotations

from collections.abc import Sequence

ENVELOPE_DOMAIN = "gibberish/envelope/v1"
FINGERPRINT_DOMAIN = "gibberish/dtls-fingerprint/v1"
CHALLENGE_DOMAIN = "gibberish/rendezvous-challenge/v1"
VECTOR_DIGEST_DOMAIN = "gibberish/vector-digest/v1"

_MAX_FIELD_BYTES = 2**32 - 1


def canonical_bytes(domain: str, fields: Sequence[str | int]) -> bytes:
    """Return the domain-separated, length-prefixed encoding of `fields` to sign or verify.

    Raises TypeError for a field that is neither str nor int (bool included) and ValueError for
    text that is not valid Unicode or a domain containing NUL.
    """
    if "\x00" in domain:
        raise ValueError("a signing domain must not contain NUL")
    parts = [domain.encode("utf-8"), b"\x00"]
    for field in fields:
        if isinstance(field, bool) or not isinstance(field, (str, int)):
            raise TypeError(f"canonical fields are str or int, got {type(field).__name__}")
        encoded = str(field).encode("utf-8")
        if len(encoded) > _MAX_FIELD_BYTES:
            raise ValueError("a canonical field must be shorter than 4 GiB")
        parts.append(len(encoded).to_bytes(4, "big"))
        parts.append(encoded)
    return b"".join(parts)
