"""One connection in several rooms, as every agent holds it (one per device): each room's
checks hold whatever else the connection is in, leaving or losing one room keeps the others."""

from __future__ import annotations

from collections.abc import Callable

from tests.signaling.conftest import Account, Peer, signed_envelope, unique_name
from tests.signaling.test_private_rooms import error_code, private_room, remove

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]


def offer(room: str, to: Account, marker: str) -> dict[str, object]:
    return {"room": room, "to": to.key.device_id, "kind": "offer", "payload": {"m": marker}}


def test_a_connection_in_a_public_room_gets_nothing_of_a_private_room_it_is_not_on(
        accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    hall, den = unique_name("hall"), private_room(alice)
    owner, other = peers(alice), peers(bob)
    for room in (hall, den):
        assert owner.join(room)["ok"]
    assert other.join(hall)["ok"]
    assert error_code(other.join(den)) == "not_a_member"
    # Present with alice in the hall does not let bob signal or publish in the den.
    assert error_code(other.call("signal", offer(den, alice, "den"))) == "not_in_room"
    assert error_code(other.call("publish", {"envelope": signed_envelope(bob, den, 1)})) \
        == "not_a_member"
    assert error_code(owner.call("signal", offer(den, bob, "den"))) == "no_such_peer"
    assert other.call("signal", offer(hall, alice, "hall"))["ok"]
    assert owner.wait_for("signal")["room"] == hall
    assert [s["room"] for s in owner.received("signal")] == [hall]
    assert owner.call("publish", {"envelope": signed_envelope(alice, den, 1)})["ok"]
    assert owner.call("publish", {"envelope": signed_envelope(alice, hall, 2)})["ok"]
    other.wait_for("stored")
    assert [s["room"] for s in other.received("stored")] == [hall]


def test_leaving_one_room_keeps_the_connection_in_the_others(
        accounts: Accounts, peers: Peers) -> None:
    rooms = [unique_name("room"), unique_name("room")]
    alice, bob = accounts("alice"), accounts("bob")
    first, second = peers(alice), peers(bob)
    for room in rooms:
        assert first.join(room)["ok"] and second.join(room)["ok"]
    assert first.call("leave", {"room": rooms[0]})["ok"]
    left = second.wait_for("peer_left")
    assert (left["room"], left["device"], left["reason"]) == (rooms[0], alice.key.device_id,
                                                              "left")
    assert error_code(first.call("signal", offer(rooms[0], bob, "gone"))) == "not_in_room"
    assert first.call("signal", offer(rooms[1], bob, "kept"))["ok"]
    got = second.wait_for("signal")
    assert (got["room"], got["payload"]) == (rooms[1], {"m": "kept"})
    assert second.call("publish", {"envelope": signed_envelope(bob, rooms[1], 1)})["ok"]
    assert first.wait_for("stored")["room"] == rooms[1]
    assert [e["room"] for e in second.received("peer_left")] == [rooms[0]]


def test_a_member_removed_from_a_private_room_keeps_its_other_rooms(
        accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    hall, den = unique_name("hall"), private_room(alice, bob)
    owner, member = peers(alice), peers(bob)
    for room in (hall, den):
        assert owner.join(room)["ok"] and member.join(room)["ok"]
    assert remove(alice, den, bob.username).status_code == 200
    assert member.wait_for("removed") == {"room": den}
    assert error_code(member.call("signal", offer(den, alice, "den"))) == "not_in_room"
    assert member.call("signal", offer(hall, alice, "hall"))["ok"]
    assert owner.wait_for("signal")["payload"] == {"m": "hall"}
    assert owner.call("publish", {"envelope": signed_envelope(alice, hall, 1)})["ok"]
    assert member.wait_for("stored")["room"] == hall
