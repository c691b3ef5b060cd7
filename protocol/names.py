"""User and room names in one normal form, so "Alice", "ＡＬＩＣＥ" and " alice " are one user."""

from __future__ import annotations

import functools
import unicodedata

from .errors import InvalidName
from .limits import MAX_ROOM_CHARS, MAX_USERNAME_CHARS

_PUNCTUATION = frozenset("-_.")

# Refuse absurd input before normalising it; no valid name comes from this many characters.
_MAX_RAW_CHARS = 1024


def normalize_username(raw: str) -> str:
    """Return the normal form of a user name, or raise InvalidName saying which rule failed.

    Normal form: NFKC, casefolded, surrounding whitespace stripped; then only letters, digits,
    "-", "_" and "." remain, it starts with a letter or digit and has 1 to 32 characters.
    """
    return _normalize(raw, "user name", MAX_USERNAME_CHARS)


def normalize_room(raw: str) -> str:
    """Return the normal form of a room name (same rules as user names, up to 64 characters)."""
    return _normalize(raw, "room name", MAX_ROOM_CHARS)


def is_normalized_username(s: object) -> bool:
    """Tell whether `s` is already a user name in normal form; never raises."""
    return isinstance(s, str) and _is_normalized(s, "user name", MAX_USERNAME_CHARS)


def is_normalized_room(s: object) -> bool:
    """Tell whether `s` is already a room name in normal form; never raises."""
    return isinstance(s, str) and _is_normalized(s, "room name", MAX_ROOM_CHARS)


def _is_normalized(s: str, kind: str, max_chars: int) -> bool:
    if len(s) > max_chars:
        return False  # a name in normal form is never longer (and is not worth caching)
    return _normalized_already(s, kind, max_chars)


@functools.lru_cache(maxsize=1024)
def _normalized_already(s: str, kind: str, max_chars: int) -> bool:
    # Cached: every frame and envelope names its room and author, the same few names again.
    try:
        return _normalize(s, kind, max_chars) == s
    except InvalidName:
        return False


def _normalize(raw: object, kind: str, max_chars: int) -> str:
    if not isinstance(raw, str):
        raise InvalidName(f"{kind} must be text")
    if len(raw) > _MAX_RAW_CHARS:
        raise InvalidName(f"{kind} is too long: at most {max_chars} characters")
    # The second NFKC pass recomposes what casefolding decomposes (e.g. "ǰ" folds to "j" plus a
    # combining caron), so that normalising a normal-form name changes nothing.
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold()).strip()
    if not name:
        raise InvalidName(f"{kind} must not be empty")
    if len(name) > max_chars:
        raise InvalidName(f"{kind} is too long: at most {max_chars} characters, got {len(name)}")
    if not _is_letter_or_digit(name[0]):
        raise InvalidName(f"{kind} must start with a letter or digit, not {_describe(name[0])}")
    for ch in name:
        if not (_is_letter_or_digit(ch) or ch in _PUNCTUATION):
            raise InvalidName(
                f"{kind} may contain only letters, digits, '-', '_' and '.'; "
                f"{_describe(ch)} is not allowed"
            )
    return name


def _is_letter_or_digit(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LN"


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    code = f"U+{ord(ch):04X}" + (f" {name}" if name else "")
    return f"{ch!r} ({code})" if ch.isprintable() else code
