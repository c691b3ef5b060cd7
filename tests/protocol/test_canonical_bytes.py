from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import CHALLENGE_DOMAIN, ENVELOPE_DOMAIN, FINGERPRINT_DOMAIN, canonical_bytes

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))


def test_tiny_case_matches_the_fixed_bytes() -> None:
    expected = b"d\x00" + b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x017"
    assert canonical_bytes("d", ["ab", 7]) == expected
    assert expected.hex() == "64000000000261620000000137"


@pytest.mark.parametrize("vector", VECTORS["canonical"])
def test_published_vectors_match(vector: dict[str, object]) -> None:
    domain, fields, expected = vector["domain"], vector["fields"], vector["bytes_hex"]
    assert isinstance(domain, str) and isinstance(fields, list) and isinstance(expected, str)
    assert canonical_bytes(domain, fields).hex() == expected


def test_length_prefix_counts_utf8_bytes_not_characters() -> None:
    assert canonical_bytes("d", ["é"]) == b"d\x00\x00\x00\x00\x02\xc3\xa9"


def test_empty_field_is_a_zero_length_prefix() -> None:
    assert canonical_bytes("d", [""]) == b"d\x00\x00\x00\x00\x00"


def test_no_fields_is_domain_and_nul() -> None:
    assert canonical_bytes("d", []) == b"d\x00"


def test_integers_are_written_in_decimal() -> None:
    assert canonical_bytes("d", [2**53 - 1]).endswith(b"9007199254740991")
    assert canonical_bytes("d", [-5]).endswith(b"\x00\x00\x00\x02-5")


def test_field_boundaries_are_unambiguous() -> None:
    assert canonical_bytes("d", ["ab", "c"]) != canonical_bytes("d", ["a", "bc"])


def test_integer_and_its_decimal_string_encode_the_same() -> None:
    assert canonical_bytes("d", [7]) == canonical_bytes("d", ["7"])


def test_domains_separate_otherwise_equal_fields() -> None:
    fields: list[str | int] = ["a", 1]
    encodings = {
        canonical_bytes(d, fields) for d in (ENVELOPE_DOMAIN, FINGERPRINT_DOMAIN, CHALLENGE_DOMAIN)
    }
    assert len(encodings) == 3


def test_domain_constants_are_fixed() -> None:
    assert ENVELOPE_DOMAIN == "gibberish/envelope/v1"
    assert FINGERPRINT_DOMAIN == "gibberish/dtls-fingerprint/v1"
    assert CHALLENGE_DOMAIN == "gibberish/rendezvous-challenge/v1"


@pytest.mark.parametrize("field", [True, 1.0, None, b"x"])
def test_fields_other_than_str_or_int_are_refused(field: object) -> None:
    with pytest.raises(TypeError):
        canonical_bytes("d", [field])  # type: ignore[list-item]


def test_domain_with_nul_is_refused() -> None:
    with pytest.raises(ValueError):
        canonical_bytes("a\x00b", [])


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError):
        canonical_bytes("d", ["\ud800"])
