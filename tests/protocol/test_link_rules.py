"""The link rules (protocol/link_rules.py), with the clock and randomness passed in."""

from __future__ import annotations

from protocol.limits import MAX_SAFE_INTEGER
from protocol.link_rules import Liveness, Verdict, next_offer_id, offers_to, retry_delay

SMALL, LARGE = "0" * 32, "f" * 32


def test_the_smaller_device_id_offers() -> None:
    assert offers_to(SMALL, LARGE) and not offers_to(LARGE, SMALL)


def test_offer_ids_follow_the_clock_but_always_grow() -> None:
    assert next_offer_id(0, 1_000) == 1_000
    assert next_offer_id(5_000, 1_000) == 5_001  # the clock went back
    assert next_offer_id(MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 10) == MAX_SAFE_INTEGER


def test_the_retry_delay_doubles_to_its_cap_with_up_to_a_quarter_of_jitter() -> None:
    assert [retry_delay(n, 0.5, 15.0, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(10, 0.5, 15.0, 0.0) == 15.0
    assert retry_delay(1, 0.5, 15.0, 0.999) < 0.5 * 1.25
    assert retry_delay(0, 0.5, 15.0, 0.0) == 0.5


def test_a_silent_link_is_disconnected_then_failed_and_a_pong_brings_it_back() -> None:
    liveness = Liveness(last_pong=100.0, stall_after=6.0, fail_after=10.0)
    assert liveness.verdict(106.0) is Verdict.CONNECTED
    assert liveness.verdict(106.5) is Verdict.DISCONNECTED
    assert liveness.verdict(116.0) is Verdict.DISCONNECTED
    liveness.pong(115.0)
    assert liveness.verdict(116.0) is Verdict.CONNECTED
    assert liveness.verdict(131.5) is Verdict.FAILED


def test_a_late_pong_never_moves_the_clock_back() -> None:
    liveness = Liveness(last_pong=50.0)
    liveness.pong(40.0)
    assert liveness.last_pong == 50.0
