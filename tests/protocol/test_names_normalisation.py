from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_ROOM_CHARS,
    MAX_USERNAME_CHARS,
    InvalidName,
    ProtocolError,
    is_normalized_room,
    is_normalized_username,
    normalize_room,
    normalize_username,
)


def test_fullwidth_letters_are_folded_to_plain_lowercase() -> None:
    assert normalize_username("ＡＬＩＣＥ") == "alice"


def test_sharp_s_is_casefolded_to_ss() -> None:
    assert normalize_username("Straße") == "strasse"


def test_uppercase_is_casefolded() -> None:
    assert normalize_room("Lobby") == "lobby"


def test_surrounding_whitespace_is_stripped() -> None:
    assert normalize_username("  alice\t\n") == "alice"


def test_ligature_is_expanded_by_nfkc() -> None:
    assert normalize_username("ﬁnn") == "finn"


def test_decomposed_accent_is_composed() -> None:
    assert normalize_username("jose\u0301") == "josé"


def test_letters_of_other_scripts_are_allowed() -> None:
    assert normalize_username("Дмитрий") == "дмитрий"
    assert normalize_username("山田") == "山田"
    assert normalize_room("Ærøskøbing") == "ærøskøbing"


def test_digits_dash_underscore_and_dot_are_allowed() -> None:
    assert normalize_room("team-7_dev.ops") == "team-7_dev.ops"


def test_name_may_start_with_a_digit() -> None:
    assert normalize_room("2024") == "2024"


@pytest.mark.parametrize("raw", ["al ice", "bob!", "a/b", "a@b", "a:b", "a+b", "#lobby"])
def test_spaces_and_other_punctuation_are_refused(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalize_username(raw)


def test_refusal_names_the_offending_character() -> None:
    with pytest.raises(InvalidName, match="SPACE"):
        normalize_username("al ice")


def test_emoji_is_refused() -> None:
    with pytest.raises(InvalidName, match="GRINNING FACE"):
        normalize_username("bob😀")


@pytest.mark.parametrize("raw", ["", "   ", "\u3000"])
def test_empty_name_is_refused(raw: str) -> None:
    with pytest.raises(InvalidName, match="must not be empty"):
        normalize_username(raw)


@pytest.mark.parametrize("raw", ["-bob", "_bob", ".bob"])
def test_name_must_start_with_letter_or_digit(raw: str) -> None:
    with pytest.raises(InvalidName, match="must start with a letter or digit"):
        normalize_room(raw)


def test_combining_mark_that_does_not_compose_is_refused() -> None:
    with pytest.raises(InvalidName, match="DEVANAGARI VOWEL SIGN I"):
        normalize_username("हिन्दी")


def test_username_of_exactly_the_maximum_length_passes() -> None:
    name = "a" * MAX_USERNAME_CHARS
    assert normalize_username(name) == name


def test_username_one_character_over_the_maximum_is_refused() -> None:
    with pytest.raises(InvalidName, match="too long"):
        normalize_username("a" * (MAX_USERNAME_CHARS + 1))


def test_room_of_exactly_the_maximum_length_passes() -> None:
    name = "r" * MAX_ROOM_CHARS
    assert normalize_room(name) == name


def test_room_one_character_over_the_maximum_is_refused() -> None:
    with pytest.raises(InvalidName, match="too long"):
        normalize_room("r" * (MAX_ROOM_CHARS + 1))


def test_length_is_counted_after_normalisation() -> None:
    assert normalize_username("  " + "a" * MAX_USERNAME_CHARS + "  ") == "a" * MAX_USERNAME_CHARS
    eleven_ffi_ligatures = "ﬃ" * 11  # 11 characters that NFKC expands to 33
    with pytest.raises(InvalidName, match="too long"):
        normalize_username(eleven_ffi_ligatures)


def test_huge_input_is_refused_as_too_long() -> None:
    with pytest.raises(InvalidName, match="too long"):
        normalize_room("a" * 1_000_000)


def test_non_text_name_is_refused() -> None:
    with pytest.raises(InvalidName, match="must be text"):
        normalize_username(42)  # type: ignore[arg-type]


def test_invalid_name_is_a_protocol_error_with_its_code() -> None:
    with pytest.raises(ProtocolError) as info:
        normalize_username("")
    assert info.value.code == "invalid_name"


def test_normal_form_is_recognised() -> None:
    assert is_normalized_username("alice")
    assert is_normalized_room("lobby")


@pytest.mark.parametrize("name", ["Alice", " alice", "ＡＬＩＣＥ", "al ice", "", "-x", 7, None])
def test_names_not_in_normal_form_are_not_recognised_and_nothing_is_raised(name: object) -> None:
    assert not is_normalized_username(name)
    assert not is_normalized_room(name)


def test_room_name_longer_than_a_username_is_normal_only_as_a_room() -> None:
    name = "r" * (MAX_USERNAME_CHARS + 1)
    assert is_normalized_room(name)
    assert not is_normalized_username(name)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_normalising_a_normal_name_changes_nothing(raw: str) -> None:
    try:
        name = normalize_room(raw)
    except InvalidName:
        return
    assert normalize_room(name) == name
    assert is_normalized_room(name)
