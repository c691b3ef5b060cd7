"""The rules that keep a link between two devices alive, apart from any connection: who
offers, offer ids, the retry backoff and what the pings say. Pure: the caller passes the clock
(seconds, any monotonic origin) and the randomness.

Liveness follows the ICE states browsers report. A link whose pongs stop for `stall_after` is
`disconnected`: the connection is kept, pings go on, and a pong brings it back (consent
freshness, RFC 7675, may well recover: a Wi-Fi hiccup, a NAT rebinding, a frozen peer
resuming). Only after `fail_after` more without a pong is it `failed`: the connection is
dropped and the offering side offers a fresh one, with backoff. aiortc 1.16 cannot restart ICE
on a live connection (it has no "disconnected" state and ignores a changed ufrag; aiortc issue
#211), so the fresh offer is its closest equivalent; browsers can use `restartIce()`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .limits import MAX_SAFE_INTEGER


def offers_to(device: str, peer: str) -> bool:
    """Whether `device` makes the offer to `peer`: the smaller device id offers (ids are
    lower-case hex of equal length, so string order is numeric order)."""
    return device < peer


def next_offer_id(last: int, now_us: int) -> int:
    """The id of a device's next offer: its clock in microseconds, kept strictly above the last
    id and below 2^53 so JavaScript reads it exactly."""
    return min(max(now_us, last + 1), MAX_SAFE_INTEGER)


def retry_delay(failures: int, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait before the next offer after `failures` failures in a row: `base`
    doubling to at most `cap`, plus up to a quarter more (`jitter` in [0, 1)), so that many
    links failing together do not offer in step."""
    delay: float = min(cap, base * 2.0 ** max(0, failures - 1))
    return delay + delay / 4 * jitter


class Verdict(StrEnum):
    """What the pongs say about an open link."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"


@dataclass
class Liveness:
    """The pong clock of one open link: `pong(now)` on each pong, `verdict(now)` to judge."""

    last_pong: float
    stall_after: float = 6.0
    fail_after: float = 10.0

    def pong(self, now: float) -> None:
        self.last_pong = max(self.last_pong, now)

    def verdict(self, now: float) -> Verdict:
        silent = now - self.last_pong
        if silent > self.stall_after + self.fail_after:
            return Verdict.FAILED
        if silent > self.stall_after:
            return Verdict.DISCONNECTED
        return Verdict.CONNECTED
