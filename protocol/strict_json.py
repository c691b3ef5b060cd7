"""The one JSON decoding policy for what clients send the server and the agent's UI: HTTP
request bodies and Socket.IO packets. (Data-channel frames have their own, `protocol.frames`.)

Decoding never raises anything but `InvalidJson`, whose message says what is wrong: text that is
not UTF-8, invalid JSON, NaN or Infinity, a number with more than MAX_INT_DIGITS digits or too
large for a float, an object with a repeated key (parsers resolve those differently), a string
holding a lone surrogate, or nesting deeper than MAX_JSON_DEPTH. Python's own parser raises
RecursionError for very deep nesting and spends quadratic time on very long integers; neither
escapes from here.
"""

from __future__ import annotations

import json
import math
import re

from .errors import ProtocolError

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted; every legitimate body is 5 levels or less."""

MAX_INT_DIGITS = 64
"""Most digits in a JSON integer; protocol integers have at most 16, database ones 19."""

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# How a surrogate gets into decoded JSON from UTF-8 text: as a \uD800-\uDFFF escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class InvalidJson(ProtocolError, ValueError):
    """A request body or packet is not JSON this server or agent accepts.

    It is a ValueError too, so that Flask and Werkzeug treat it as a JSON decoding failure."""

    code = "invalid_json"


def loads(data: str | bytes) -> object:
    """Decode one JSON document from untrusted text or UTF-8 bytes, or raise InvalidJson."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJson(f"the text is not valid UTF-8: {exc.reason} at byte "
                              f"{exc.start}") from None
        raw_surrogates = False  # strict UTF-8 cannot encode one
    else:
        text = data
        raw_surrogates = _LONE_SURROGATE.search(text) is not None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_int,
                           parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise InvalidJson(f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels") from None
    except InvalidJson:
        raise
    except ValueError as exc:
        raise InvalidJson(f"not valid JSON: {exc}") from None
    # The walk is for what the text may hold: strings only if it has a surrogate in some
    # form, containers only if it has more brackets than the depth allowed (a chat frame has
    # neither: walking every string of every frame was most of its parsing).
    strings = raw_surrogates or _SURROGATE_ESCAPE.search(text) is not None
    if strings or text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        _check_structure(value, strings)
    return value


def _check_structure(value: object, strings: bool = True) -> None:
    """Refuse nesting past MAX_JSON_DEPTH and (if `strings`) lone surrogates, walking without
    recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if strings:
                _check_string(item)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidJson(f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if strings:
                        _check_string(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_string(text: str) -> None:
    found = _LONE_SURROGATE.search(text)
    if found:
        raise InvalidJson(f"a JSON string holds a lone surrogate (U+{ord(found.group()):04X}); "
                          "text must be valid Unicode")


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            shown = key if len(key) <= 40 else key[:40] + "…"
            raise InvalidJson(f"the key {shown!r} appears more than once in a JSON object")
        obj[key] = value
    return obj


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidJson(f"a JSON number has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _float(text: str) -> float:
    if len(text) > 2 * MAX_INT_DIGITS:
        raise InvalidJson(f"a JSON number is longer than {2 * MAX_INT_DIGITS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"the JSON number {text[:40]} is too large")
    return value


def _constant(name: str) -> object:
    raise InvalidJson(f"{name} is not a JSON number")
