"""JSON frames: the size limit and the parsing rules every receiver applies before anything else."""

from __future__ import annotations

import json

from .errors import FrameTooLarge, InvalidEnvelope
from .limits import MAX_FRAME_BYTES


def parse_frame(data: str | bytes) -> object:
    """Parse one JSON frame from untrusted input, checking its size before parsing it.

    Raises FrameTooLarge over MAX_FRAME_BYTES (UTF-8), and InvalidEnvelope for invalid UTF-8,
    invalid JSON, NaN or Infinity, or an object with a repeated key (which parsers resolve
    differently, so a signed field could be read two ways).
    """
    if isinstance(data, bytes):
        _check_size(len(data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEnvelope(f"frame is not valid UTF-8: {exc.reason}") from exc
    else:
        # Every character takes at least one byte, so a long string is refused without encoding it.
        size = len(data) if len(data) > MAX_FRAME_BYTES else _utf8_size(data)
        _check_size(size)
        text = data
    try:
        return json.loads(text, object_pairs_hook=_object_without_repeats, parse_constant=_refuse)
    except RecursionError as exc:
        raise InvalidEnvelope("frame is not valid JSON: nested too deeply") from exc
    except ValueError as exc:
        raise InvalidEnvelope(f"frame is not valid JSON: {exc}") from exc


def encode_frame(obj: object) -> str:
    """Serialise a frame as compact JSON (UTF-8 kept as is), refusing one too large to send.

    Raises FrameTooLarge over MAX_FRAME_BYTES and ValueError for NaN or Infinity.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    _check_size(_utf8_size(text))
    return text


def _check_size(size: int) -> None:
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(
            f"frame is too large: at most {MAX_FRAME_BYTES} bytes allowed, got {size} or more"
        )


def _object_without_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {_short(key)} appears more than once")
        obj[key] = value
    return obj


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _refuse(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON number")


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
