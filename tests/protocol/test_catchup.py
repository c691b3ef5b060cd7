"""Delivery that needs no particular link (protocol/catchup.py): what a device pulls, from whom
and when, with the clock passed in; and the vector digest that linked peers compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import InvalidEnvelope, VersionVector
from protocol.catchup import (
    HINT_GAP,
    LINKED_SERVER_PULL_DELAY,
    PULL_TIMEOUT,
    SERVER_PULL_DELAY,
    CatchUp,
    Pull,
    PullServer,
    SendDigest,
    lacking,
)
from protocol.sync import DigestFrame, parse_sync_frame
from protocol.vector import holds_more, vector_digest

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))
A, B, C = "a" * 32, "b" * 32, "c" * 32
NONE: dict[str, frozenset[str] | None] = {}


def vv(**seqs: int) -> VersionVector:
    return VersionVector({{"a": A, "b": B, "c": C}[k]: v for k, v in seqs.items()})


# -- the digest and its frame -----------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["vector_digest"])
def test_vector_digest_matches_the_fixed_vectors(case: dict[str, object]) -> None:
    assert vector_digest(VersionVector.from_dict(case["vector"])) == case["digest"]


def test_equal_vectors_have_equal_digests_and_others_differ() -> None:
    assert vector_digest(VersionVector({A: 2, B: 0})) == vector_digest(VersionVector({A: 2}))
    assert vector_digest(vv(a=1, b=2)) != vector_digest(vv(a=2, b=1))
    assert vector_digest(vv(a=12)) != vector_digest(vv(a=1, b=2))


def test_digest_frame_round_trips_and_refuses_a_malformed_digest() -> None:
    frame = DigestFrame(vector_digest(vv(a=3)))
    assert parse_sync_frame(frame.encode()) == frame
    for bad in ('"short"', "22", '"' + "!" * 22 + '"', '"' + "A" * 23 + '"'):
        with pytest.raises(InvalidEnvelope, match="digest"):
            parse_sync_frame('{"t":"vvd","digest":' + bad + "}")
    with pytest.raises(InvalidEnvelope, match="wrong keys"):
        parse_sync_frame('{"t":"vvd","digest":"' + "A" * 22 + '","more":1}')


def test_lacking_names_the_ids_above_the_vector() -> None:
    ours = vv(a=2)
    assert lacking([f"{A}:1", f"{A}:3", f"{B}:1", "junk", f"{A}:x", f"{A}:"], ours) == {
        f"{A}:3", f"{B}:1"}
    assert holds_more(vv(a=3), vv(a=2, b=5))
    assert not holds_more(vv(a=2), vv(a=2, b=5))


# -- pulling from linked peers ----------------------------------------------------------------


def test_a_channel_that_opens_pulls_once() -> None:
    core = CatchUp(interval=3)
    assert core.link_up(B, now=0) == [Pull(B)]
    assert core.pulling(B, now=1)
    assert core.answer_ended(B, now=1) == []
    assert not core.pulling(B, now=1)


def test_a_digest_that_differs_pulls_and_an_equal_one_does_not() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    core.answer_ended(B, now=0.1)
    assert core.digest_received(B, "same", "same", now=1) == []
    assert core.digest_received(B, "theirs", "ours", now=1) == [Pull(B)]
    # The answer to that pull is under way and covers what the next digest says.
    assert core.digest_received(B, "theirs", "ours", now=1.1) == []
    assert core.digest_received(C, "theirs", "ours", now=1) == [], "not a linked peer"


def test_a_vector_that_holds_more_pulls_unless_a_pull_is_under_way() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    assert core.vector_received(B, vv(a=3), vv(a=2), now=0.01) == [], "under way"
    core.answer_ended(B, now=0.02)
    assert core.vector_received(B, vv(a=2), vv(a=2, c=1), now=1) == []
    assert core.vector_received(B, vv(a=3), vv(a=2), now=1) == [Pull(B)]


def test_a_pull_whose_answer_never_ends_times_out() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    assert core.digest_received(B, "x", "y", now=PULL_TIMEOUT - 0.1) == []
    assert core.digest_received(B, "x", "y", now=PULL_TIMEOUT) == [Pull(B)]


def test_a_gap_during_a_pull_pulls_again_when_it_ends() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    assert core.gap_seen(B, now=0.1) == []
    assert core.answer_ended(B, now=0.2) == [Pull(B)]
    assert core.answer_ended(B, now=0.3) == []
    assert core.gap_seen(B, now=1) == [Pull(B)]


def test_a_link_that_goes_down_is_forgotten() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    core.link_down(B)
    assert core.gap_seen(B, now=1) == []
    assert core.due(now=10, ours=vv(), server_up=True) == []
    assert core.next_due() is None


# -- digests on the clock ---------------------------------------------------------------------


def test_each_linked_peer_gets_a_digest_every_interval() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    core.link_up(C, now=1)
    assert core.next_due() == 3
    assert core.due(now=2.9, ours=vv(), server_up=True) == []
    assert core.due(now=3, ours=vv(), server_up=True) == [SendDigest(B)]
    assert core.next_due() == 4
    assert core.due(now=4, ours=vv(), server_up=True) == [SendDigest(C)]
    assert core.due(now=7, ours=vv(), server_up=True) == [SendDigest(B), SendDigest(C)]


def test_fresh_messages_bring_the_digest_forward_for_peers_that_may_lack_them() -> None:
    core = CatchUp(interval=3)
    for device in (A, B, C):
        core.link_up(device, now=0)
    # A message by A, from A: B reports a channel to A, C does not (its link to A failed).
    core.fresh(A, [A], {B: frozenset({A, C}), C: frozenset({B})}, now=1)
    assert core.next_due() == 1
    assert core.due(now=1, ours=vv(), server_up=True) == [SendDigest(C)]
    # Another one right after: no sooner than HINT_GAP after the last digest to C.
    core.fresh(A, [A], {B: frozenset({A, C}), C: frozenset({B})}, now=1.05)
    assert core.next_due() == pytest.approx(1 + HINT_GAP)
    assert core.due(now=1.1, ours=vv(), server_up=True) == []
    assert core.due(now=1 + HINT_GAP, ours=vv(), server_up=True) == [SendDigest(C)]


def test_a_peer_with_no_report_yet_may_lack_anything() -> None:
    core = CatchUp(interval=3)
    core.link_up(B, now=0)
    core.link_up(C, now=0)
    core.fresh(None, [A], {B: None}, now=1)
    assert core.due(now=1, ours=vv(), server_up=True) == [SendDigest(B), SendDigest(C)]
    # The author itself and the peer the messages came from are never hinted.
    core.fresh(B, [C], NONE, now=2)
    assert core.due(now=2, ours=vv(), server_up=True) == []


# -- the server's word ------------------------------------------------------------------------


def test_ids_the_server_names_are_pulled_from_it_after_a_short_delay() -> None:
    core = CatchUp(interval=3)
    core.server_named([f"{A}:1", f"{A}:2"], vv(a=1), now=0)
    assert core.next_due() == SERVER_PULL_DELAY
    assert core.due(now=0.1, ours=vv(a=1), server_up=True) == []
    assert core.due(now=SERVER_PULL_DELAY, ours=vv(a=1), server_up=True) == [PullServer()]
    # One read at a time; ids named meanwhile are read after it.
    core.server_named([f"{A}:3"], vv(a=1), now=0.3)
    assert core.due(now=1, ours=vv(a=1), server_up=True) == []
    core.server_pull_ended()
    assert core.due(now=1, ours=vv(a=1), server_up=True) == [PullServer()]


def test_ids_a_peer_delivered_meanwhile_are_not_read_from_the_server() -> None:
    core = CatchUp(interval=3)
    core.server_named([f"{A}:1"], vv(), now=0)
    core.server_named([f"{B}:1"], vv(b=1), now=0)  # already held: nothing named
    assert core.due(now=1, ours=vv(a=1), server_up=True) == []
    assert core.next_due() is None


def test_a_server_that_is_down_is_not_read() -> None:
    core = CatchUp(interval=3)
    core.server_named([f"{A}:1"], vv(), now=0)
    assert core.due(now=1, ours=vv(), server_up=False) == []
    assert core.next_due() is None, "nothing left to wake for"


def test_ids_from_a_linked_author_wait_longer_before_the_server_is_read() -> None:
    # Its author sent it on the open channel: under load it may take longer than the short
    # delay, and reading the server would fetch it twice.
    core = CatchUp(interval=30)
    core.link_up(A, now=0)
    core.server_named([f"{A}:1"], vv(), now=0, linked=core.linked())
    core.server_named([f"{B}:1"], vv(), now=0, linked=core.linked())
    assert core.next_due() == SERVER_PULL_DELAY
    # B is not linked: read at once after the short delay, which brings A's id too.
    assert core.due(now=SERVER_PULL_DELAY, ours=vv(), server_up=True) == [PullServer()]
    core.server_pull_ended()
    core.server_named([f"{A}:2"], vv(a=1), now=1, linked=core.linked())
    assert core.next_due() == 1 + LINKED_SERVER_PULL_DELAY
    assert core.due(now=1 + SERVER_PULL_DELAY, ours=vv(a=1), server_up=True) == []
    assert core.due(now=1 + LINKED_SERVER_PULL_DELAY, ours=vv(a=1),
                    server_up=True) == [PullServer()]


def test_an_id_from_a_linked_author_that_arrives_is_not_read_from_the_server() -> None:
    core = CatchUp(interval=30)
    core.link_up(A, now=0)
    core.server_named([f"{A}:1"], vv(), now=0, linked=core.linked())
    assert core.due(now=LINKED_SERVER_PULL_DELAY, ours=vv(a=1), server_up=True) == []
    assert core.next_due() == 30
