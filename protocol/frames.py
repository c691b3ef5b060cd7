"""JSON frames: the size limit and the parsing rules every receiver applies before anything else.

A frame is decoded with the one JSON policy of `protocol.strict_json` (no repeated keys, NaN,
lone surrogates, huge numbers or deep nesting), after its size is checked; the frame types
themselves are listed in `protocol.channel`."""

from __future__ import annotations

import json

from .errors import FrameTooLarge, InvalidEnvelope
from .limits import MAX_FRAME_BYTES
from .strict_json import InvalidJson, loads


def parse_frame(data: str | bytes) -> object:
    """Parse one JSON frame from untrusted input, checking its size before parsing it.

    Raises FrameTooLarge over MAX_FRAME_BYTES (UTF-8), and InvalidEnvelope for invalid UTF-8,
    or JSON that `protocol.strict_json` refuses: invalid JSON, NaN or Infinity, an object with a
    repeated key (which parsers resolve differently, so a signed field could be read two ways),
    a lone surrogate, a huge number or deep nesting.
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
        return loads(text)
    except InvalidJson as exc:
        detail = exc.message.removeprefix("not valid JSON: ")
        raise InvalidEnvelope(f"frame is not valid JSON: {detail}") from None


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


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))

