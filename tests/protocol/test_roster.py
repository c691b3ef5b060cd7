"""The roster merge rule (protocol/roster.py): no order of join reply, peer_joined, peer_left
and signal can leave a present pair unlinked or keep a departed device."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pytest

from protocol.roster import Roster, epoch_of, kept_on_join

ME = "a" * 43  # the smaller id: this side offers
B = "b" * 43
C = "c" * 43


def peer(device: str, epoch: int | None, user: str = "bob") -> dict[str, Any]:
    out: dict[str, Any] = {"user": user, "device": device, "public_key": f"key-{device[:1]}"}
    if epoch is not None:
        out["epoch"] = epoch
    return out


Event = list[Any]


def apply(roster: Roster, events: list[Event]) -> dict[str, int | None]:
    """Run `events` ([kind, ...]) through `roster` after one join request; device -> epoch."""
    generation = roster.begin_join()
    for event in events:
        kind = event[0]
        if kind == "reply":
            roster.snapshot(event[1], generation, keep=event[2] if len(event) > 2 else ())
        elif kind in ("joined", "signal"):
            roster.joined(event[1])
        elif kind == "left":
            roster.left(event[1], event[2])
        else:
            raise AssertionError(kind)
    return {e.device: e.epoch for e in roster.entries()}


def scenarios() -> list[tuple[str, list[Event], dict[str, int | None], list[dict[str, Any]]]]:
    """(name, events in server order, expected roster, roster known before the join)."""
    return [
        ("b joins after our snapshot", [["reply", []], ["joined", peer(B, 7)],
                                        ["signal", peer(B, 7)]], {B: 7}, []),
        ("b joins before our snapshot", [["reply", [peer(B, 7)]], ["joined", peer(B, 7)],
                                         ["signal", peer(B, 7)]], {B: 7}, []),
        ("b present, signals", [["reply", [peer(B, 7)]], ["signal", peer(B, 7)]], {B: 7}, []),
        ("b joins and leaves", [["reply", [peer(B, 5)]], ["left", B, 5]], {}, []),
        ("b leaves and comes back", [["reply", [peer(B, 5)]], ["left", B, 5],
                                     ["joined", peer(B, 9)]], {B: 9}, []),
        ("an older server: no epochs", [["reply", []], ["joined", peer(B, None)]],
         {B: None}, []),
        ("a stale entry of the last connection goes", [["reply", [peer(B, 3)]]], {B: 3},
         [peer(C, 1), peer(B, 3)]),
    ]


def all_orders() -> list[tuple[str, list[Event], dict[str, int | None], list[dict[str, Any]]]]:
    out = []
    for name, events, expected, before in scenarios():
        for order in permutations(events):
            # The reply of the join and a peer_left of the same epoch commute only by the
            # tombstone; peer_joined of a later epoch may come before the left of an earlier.
            out.append((name, list(order), expected, before))
    return out


def run(events: list[Event], before: list[dict[str, Any]]) -> dict[str, int | None]:
    roster = Roster(ME)
    for p in before:
        roster.joined(p)
    return apply(roster, events)


@pytest.mark.parametrize(("name", "events", "expected", "before"), all_orders())
def test_every_order_of_the_events_gives_the_same_roster(
        name: str, events: list[Event], expected: dict[str, int | None],
        before: list[dict[str, Any]]) -> None:
    assert run(events, before) == expected, name


def test_the_reply_drops_only_what_was_learned_before_its_request() -> None:
    roster = Roster(ME)
    roster.joined(peer(C, 1))
    generation = roster.begin_join()
    roster.joined(peer(B, 2))  # announced after our join went out, before its reply
    roster.snapshot([], generation)
    assert [e.device for e in roster.entries()] == [B]


def test_an_open_channel_keeps_a_device_the_reply_does_not_list() -> None:
    roster = Roster(ME)
    roster.joined(peer(C, 1))
    roster.snapshot([], roster.begin_join(), keep={C})
    assert C in roster


def test_a_new_key_for_a_device_is_a_change_and_ourselves_never_listed() -> None:
    roster = Roster(ME)
    assert roster.joined(peer(B, 1))
    assert not roster.joined(peer(B, 1))
    assert roster.joined({**peer(B, 2), "public_key": "other"})
    assert not roster.joined(peer(ME, 3))
    assert len(roster) == 1


@pytest.mark.parametrize("bad", [None, -1, True, 2**53, "7", 1.5])
def test_malformed_epochs_count_as_missing(bad: Any) -> None:
    assert epoch_of(bad) is None


def test_kept_on_join_keeps_the_listed_the_fresh_and_the_linked() -> None:
    learned = {"x": 1, "y": 2, "z": 1, "w": 1}
    assert kept_on_join(learned, {"x"}, 2, {"z"}) == {"x", "y", "z"}
