from __future__ import annotations

import pytest

from protocol import (
    BadSignature,
    Conflict,
    FrameTooLarge,
    InvalidEnvelope,
    InvalidName,
    ProtocolError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidEnvelope, "invalid_envelope"),
        (InvalidName, "invalid_name"),
        (BadSignature, "bad_signature"),
        (FrameTooLarge, "too_large"),
        (Conflict, "conflict"),
    ],
)
def test_each_error_is_a_protocol_error_with_its_own_code(
    error: type[ProtocolError], code: str
) -> None:
    exc = error("what went wrong, in words")
    assert isinstance(exc, ProtocolError)
    assert exc.code == code
    assert str(exc) == "what went wrong, in words"


def test_codes_are_distinct() -> None:
    errors = [InvalidEnvelope, InvalidName, BadSignature, FrameTooLarge, Conflict]
    assert len({error.code for error in errors}) == len(errors)
