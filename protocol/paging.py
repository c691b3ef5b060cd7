"""Page tokens for walking a log in display order: `lamport.device.seq`, the order key of the
first (or last) message of a page. Shared by the server's history page and the agent's UI."""

from __future__ import annotations

from .limits import MAX_LAMPORT, MAX_SEQ

OrderKey = tuple[int, str, int]


def order_token(key: OrderKey) -> str:
    lamport, device, seq = key
    return f"{lamport}.{device}.{seq}"


def parse_order_token(raw: str | None) -> OrderKey | None:
    """The order key in a page token, or None for a missing or malformed one."""
    if not raw:
        return None
    parts = raw.split(".")
    if len(parts) != 3 or len(parts[1]) > 32:
        return None
    lamport, device, seq = parts
    if not (_bounded_int(lamport, MAX_LAMPORT) and _bounded_int(seq, MAX_SEQ)):
        return None
    return int(lamport), device, int(seq)


def _bounded_int(text: str, high: int) -> bool:
    """ASCII digits for a number up to `high`. `str.isdigit` alone accepts "²", which int()
    refuses, and a number past 2**63 overflows a database's integer parameters."""
    return text.isascii() and text.isdigit() and len(text) <= 20 and int(text) <= high
