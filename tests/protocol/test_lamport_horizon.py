"""The Lamport horizon: one validly signed envelope cannot push the room's clock out of reach."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol import (
    LAMPORT_LEAD_MS,
    MAX_LAMPORT,
    Envelope,
    LamportAhead,
    MessageLog,
    ProtocolError,
    check_lamport_horizon,
    lamport_horizon,
    next_lamport,
)

EnvelopeFactory = Callable[..., Envelope]
NOW_MS = 1_800_000_000_000


def test_the_horizon_is_the_clock_in_milliseconds_plus_a_day() -> None:
    assert LAMPORT_LEAD_MS == 86_400_000
    assert lamport_horizon(NOW_MS) == NOW_MS + LAMPORT_LEAD_MS
    assert lamport_horizon(-5) == LAMPORT_LEAD_MS
    assert lamport_horizon(MAX_LAMPORT) == MAX_LAMPORT


def test_an_envelope_at_the_largest_lamport_is_refused(make_envelope: EnvelopeFactory) -> None:
    poison = make_envelope(lamport=MAX_LAMPORT)
    with pytest.raises(LamportAhead) as caught:
        check_lamport_horizon(poison, NOW_MS)
    assert caught.value.code == "lamport_ahead"
    assert isinstance(caught.value, ProtocolError)
    assert "refused for now" in str(caught.value)


def test_an_envelope_up_to_the_horizon_is_accepted(make_envelope: EnvelopeFactory) -> None:
    check_lamport_horizon(make_envelope(lamport=1), NOW_MS)
    check_lamport_horizon(make_envelope(lamport=NOW_MS + LAMPORT_LEAD_MS), NOW_MS)
    with pytest.raises(LamportAhead):
        check_lamport_horizon(make_envelope(lamport=NOW_MS + LAMPORT_LEAD_MS + 1), NOW_MS)


def test_a_refused_envelope_is_accepted_once_the_clock_reaches_it(
        make_envelope: EnvelopeFactory) -> None:
    early = make_envelope(lamport=NOW_MS + 2 * LAMPORT_LEAD_MS)
    with pytest.raises(LamportAhead):
        check_lamport_horizon(early, NOW_MS)
    check_lamport_horizon(early, NOW_MS + LAMPORT_LEAD_MS)


def test_after_the_worst_accepted_envelope_everyone_can_still_post(
        make_envelope: EnvelopeFactory) -> None:
    log = MessageLog("lobby")
    log.add(make_envelope(lamport=lamport_horizon(NOW_MS)))
    following = next_lamport(log.max_lamport)
    assert following == NOW_MS + LAMPORT_LEAD_MS + 1 < MAX_LAMPORT
    # Even a clock at the horizon leaves room for ~285,000 years of further poisoning.
    assert (MAX_LAMPORT - lamport_horizon(NOW_MS)) // (365 * 24 * 3600 * 1000) > 280_000


def test_the_clock_must_be_an_integer(make_envelope: EnvelopeFactory) -> None:
    with pytest.raises(TypeError):
        lamport_horizon(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_lamport_horizon(make_envelope(), True)
