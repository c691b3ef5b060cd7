"""The author's timestamp (`ts`, milliseconds since the epoch) as people see it.

`ts` is for display only, and any integer from 0 to MAX_TS (2^53−1) is valid, so every renderer
must show any of them. Python's datetime ends with the year 9999 and JavaScript's Date at
8.64e15 ms (the year 275760); a later `ts` is shown as DISPLAY_OVERFLOW instead of a date,
and gets no machine-readable date. `static/chat/timestamps.js` applies the same rule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

DISPLAY_MAX_MS: Final = 253_402_300_799_999
"""The last millisecond of the year 9999 (UTC): the latest `ts` every renderer shows as a date."""

DISPLAY_OVERFLOW: Final = "after 9999"
"""What a renderer shows for a `ts` past DISPLAY_MAX_MS."""


def displayable(ms: object) -> bool:
    """Tell whether `ms` is an integer every renderer can show as a date; never raises."""
    return type(ms) is int and 0 <= ms <= DISPLAY_MAX_MS


def iso_utc(ms: object) -> str | None:
    """`ms` as ISO 8601 in UTC to the second (`2023-11-14T22:13:20+00:00`), or None when it is
    not a date any renderer can show."""
    if not displayable(ms):
        return None
    assert isinstance(ms, int)
    return _utc(ms).isoformat(timespec="seconds")


def short_utc(ms: object) -> str:
    """`ms` for people, `2023-11-14 22:13 UTC`, or DISPLAY_OVERFLOW past the year 9999."""
    if not displayable(ms):
        return DISPLAY_OVERFLOW
    assert isinstance(ms, int)
    return _utc(ms).strftime("%Y-%m-%d %H:%M UTC")


def _utc(ms: int) -> datetime:
    # From whole seconds, as ms / 1000 as a float would round the year 9999's last second up.
    return datetime.fromtimestamp(ms // 1000, UTC)
