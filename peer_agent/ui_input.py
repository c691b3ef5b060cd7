"""What a chat page sends the agent (ui.py), read by one policy: JSON bodies and WebSocket
frames decoded by `protocol.strict_json` (UTF-8 only), each field checked, and whatever is
wrong refused with a UIError that says why (ui.py answers it as a 4xx)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from protocol.limits import MAX_ROOM_CHARS
from protocol.strict_json import InvalidJson, loads

# The most a page's frame on its WebSocket may hold: `{"type": "reading", "room": …}` with a
# room name of MAX_ROOM_CHARS characters, escaped, is well under it. Longer ones are not read.
MAX_PAGE_FRAME = 4096


class UIError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def limit_of(request: web.Request, default: int, most: int) -> int:
    """The `limit` query parameter, clamped to 1..most."""
    try:
        return max(1, min(most, int(request.query.get("limit", str(default)))))
    except ValueError:
        raise UIError(400, "invalid_argument", "limit must be an integer") from None


async def json_body(request: web.Request) -> dict[str, Any]:
    """A JSON object body; a cross-site form cannot send JSON."""
    if request.content_type != "application/json":
        raise UIError(415, "json_required", "send a JSON body {\"text\": …}")
    charset = request.charset
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise UIError(400, "invalid_json",
                      f"the body must be UTF-8, not {charset[:40]!r}")
    try:
        body = loads(await request.read())
    except InvalidJson as exc:
        raise UIError(400, "invalid_json", str(exc)) from None
    if not isinstance(body, dict):
        raise UIError(400, "invalid_request", "the body must be a JSON object")
    return body


def text_of(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise UIError(400, "invalid_request", "the body must be {\"text\": \"…\"}")
    return text


def reading_of(text: str) -> str | None:
    """The room a page's `{"type": "reading", "room": name or null}` frame names; UIError
    saying what is wrong with any other frame."""
    if len(text) > MAX_PAGE_FRAME:
        raise UIError(413, "too_large", f"a frame of {len(text)} characters: at most "
                      f"{MAX_PAGE_FRAME}")
    try:
        frame = loads(text)
    except InvalidJson as exc:
        raise UIError(400, "invalid_json", str(exc)) from None
    if not isinstance(frame, dict):
        raise UIError(400, "invalid_frame", "a frame must be a JSON object")
    if frame.get("type") != "reading":
        raise UIError(400, "invalid_frame", "a frame must be {\"type\": \"reading\", "
                      f"\"room\": …}}, not of type {frame.get('type')!r:.40}")
    room = frame.get("room", ...)  # missing is not null: refused below
    if room is not None and not isinstance(room, str):
        raise UIError(400, "invalid_frame", "room must be a room name or null")
    if room is not None and len(room) > MAX_ROOM_CHARS:
        raise UIError(400, "invalid_frame", f"room names have at most {MAX_ROOM_CHARS} characters")
    return room


def room_of(body: dict[str, Any]) -> str | None:
    room = body.get("room")
    if room is not None and not isinstance(room, str):
        raise UIError(400, "invalid_request", "room must be a room name")
    return room
