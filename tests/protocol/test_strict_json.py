"""protocol.strict_json refuses lone surrogates and nesting past MAX_JSON_DEPTH wherever they
are, though it walks a document only when its text can hold one (a surrogate escape, a raw
surrogate in text given as str, more brackets than the depth allowed)."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.strict_json import MAX_JSON_DEPTH, InvalidJson, _check_structure, loads


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_to_the_limit_is_taken_and_one_more_refused() -> None:
    assert loads(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(InvalidJson, match="nested too deeply"):
        loads(nested(MAX_JSON_DEPTH + 1))


def test_many_shallow_objects_are_taken() -> None:
    frame = {"t": "batch", "envs": [{"room": "lobby", "seq": n} for n in range(200)]}
    assert loads(json.dumps(frame)) == frame


@pytest.mark.parametrize("text", [
    '{"t": "batch", "envs": [' + ", ".join(['{"text": "a"}'] * 50) + ', {"text": "\\ud800"}]}',
    '{"t": "msg", "env": {"\\udfff": 1}}',
    '["\\uDBFF"]',
], ids=["deep-in-a-batch", "in-a-key", "upper-case-escape"])
def test_a_lone_surrogate_escape_is_refused_wherever_it_is(text: str) -> None:
    with pytest.raises(InvalidJson, match="lone surrogate"):
        loads(text)
    with pytest.raises(InvalidJson, match="lone surrogate"):
        loads(text.encode())


def test_a_raw_lone_surrogate_in_text_given_as_str_is_refused() -> None:
    with pytest.raises(InvalidJson, match="lone surrogate"):
        loads('{"text": "\ud800"}')


def test_a_surrogate_pair_and_an_escaped_backslash_are_taken() -> None:
    assert loads('["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert loads('["\\\\ud800"]') == ["\\ud800"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    # Surrogates (Cs) among ordinary letters and the JSON escapes' characters.
    | st.text(st.characters(categories=["Cs", "Ll", "Lu", "Nd"], include_characters="\\\"/"),
              max_size=4),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=40,
)


@given(json_values, st.integers(0, MAX_JSON_DEPTH + 2))
@example("\ud800\udc00", 0)  # found by Hypothesis: escaped, a pair; raw, two lone surrogates
def test_refused_exactly_when_the_full_walk_refuses(value: object, wrap: int) -> None:
    for _ in range(wrap):
        value = [value]
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        # The rule itself, on what the text decodes to: the walk of every string and container.
        # (Not on `value`: two surrogates in a row are escaped as a pair, which decodes to one
        # character outside the BMP, and are kept raw, two lone ones, without ensure_ascii.)
        try:
            _check_structure(json.loads(text))
            expected: str | None = None
        except InvalidJson as exc:
            expected = str(exc)
        try:
            loads(text)
            got: str | None = None
        except InvalidJson as exc:
            got = str(exc)
        assert got == expected, text
