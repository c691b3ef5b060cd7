"""Rooms and presence over Socket.IO: join answers with the roster, the others hear of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from protocol import DeviceKey
from tests.signaling.conftest import Account, Peer, drop_peer, signed_envelope, unique_name

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]


def plain(value: Any) -> Any:
    """`value` without the presence epochs (their order is tested on its own)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "epoch"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def roster_entry(account: Account, rendezvous: str | None = None) -> dict[str, Any]:
    return {"user": account.username, "device": account.key.device_id,
            "public_key": account.key.public_key_b64, "rendezvous": rendezvous}


def test_join_answers_with_the_peers_already_there(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    assert peers(alice).join(room)["ok"]
    reply = peers(bob).join(room)
    assert plain(reply) == {
        "ok": True, "room": room, "kind": "public", "owner": None, "members": None,
        "you": roster_entry(bob), "peers": [roster_entry(alice)],
        "ice_servers": [], "ice_ttl": None, "cursor": 0,
    }


def test_first_peer_in_a_room_gets_an_empty_roster(accounts: Accounts, peers: Peers) -> None:
    alice = accounts("alice")
    reply = peers(alice).join(unique_name("room"))
    assert reply["ok"] is True
    assert plain(reply["peers"]) == []
    assert plain(reply["you"]) == roster_entry(alice)


def test_join_reports_the_latest_cursor_of_the_room(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    first = peers(alice)
    first.join(room)
    acks = [first.call("publish", {"envelope": signed_envelope(alice, room, seq)})
            for seq in (1, 2)]
    assert peers(bob).join(room)["cursor"] == acks[-1]["cursor"]


def test_peers_joining_a_new_room_at_once_all_get_in(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    joiners = [peers(accounts(f"joiner{i}")) for i in range(6)]
    start = threading.Barrier(len(joiners))
    replies: list[Any] = [None] * len(joiners)

    def join(index: int) -> None:
        start.wait(timeout=10)
        replies[index] = joiners[index].join(room)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(len(joiners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(reply["ok"] for reply in replies), replies
    latecomer = peers(accounts("latecomer")).join(room)
    assert sorted(p["user"] for p in latecomer["peers"]) == sorted(
        j.account.username for j in joiners)


def test_peers_already_in_the_room_get_peer_joined(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    first = peers(alice)
    first.join(room)
    peers(bob).join(room, rendezvous="192.0.2.7:4433")
    notice = first.wait_for("peer_joined")
    assert plain(notice) == {"room": room, "peer": roster_entry(bob, "192.0.2.7:4433")}


def test_the_joining_peer_does_not_get_its_own_peer_joined(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice, bob, carol = accounts("alice"), accounts("bob"), accounts("carol")
    peers(alice).join(room)
    second = peers(bob)
    second.join(room)
    peers(carol).join(room)  # a later notice on bob's connection
    second.wait_for("peer_joined")
    assert [d["peer"]["user"] for d in second.received("peer_joined")] == [carol.username]


def test_rendezvous_address_is_published_in_the_roster(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    assert peers(alice).join(room, rendezvous="[2001:db8::1]:7000")["ok"]
    reply = peers(bob).join(room)
    assert plain(reply["peers"]) == [roster_entry(alice, "[2001:db8::1]:7000")]


@pytest.mark.parametrize("rendezvous", ["no-port", "host:", "http://host:80", "h:123456",
                                        "a b:80", ""])
def test_malformed_rendezvous_address_is_refused(
    accounts: Accounts, peers: Peers, rendezvous: str,
) -> None:
    reply = peers(accounts("alice")).join(unique_name("room"), rendezvous=rendezvous)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert "rendezvous" in reply["error"]["message"]


def test_join_with_another_users_device_is_refused(accounts: Accounts, peers: Peers) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    reply = peers(mallory).call("join", {"room": unique_name("room"),
                                         "device": alice.key.device_id})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unknown_device"


def test_join_with_an_unregistered_device_is_refused(accounts: Accounts, peers: Peers) -> None:
    reply = peers(accounts("alice")).call("join", {"room": unique_name("room"),
                                                   "device": DeviceKey.generate().device_id})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unknown_device"


def test_refused_join_does_not_enter_the_room(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, mallory, carol = accounts("alice"), accounts("mallory"), accounts("carol")
    peers(mallory).call("join", {"room": room, "device": alice.key.device_id})
    assert plain(peers(carol).join(room)["peers"]) == []


def test_room_names_are_normalised_on_join(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("lobby")
    alice, bob = accounts("alice"), accounts("bob")
    reply = peers(alice).join(room.replace("lobby", "Lobby-X"))
    assert reply["room"] == room.replace("lobby", "lobby-x")
    listed = peers(bob).join(room.replace("lobby", "lobby-x"))["peers"]
    assert plain(listed) == [roster_entry(alice)]


@pytest.mark.parametrize("room", ["", "has space", "-dash", "x" * 65, "semi;colon", "<b>"])
def test_join_with_an_invalid_room_name_is_refused(
    accounts: Accounts, peers: Peers, room: str,
) -> None:
    reply = peers(accounts("alice")).join(room)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["message"].startswith("room:")


def test_leave_sends_peer_left_to_the_others(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    first, second = peers(alice), peers(bob)
    first.join(room)
    second.join(room)
    assert second.call("leave", {"room": room}) == {"ok": True, "room": room}
    notice = first.wait_for("peer_left")
    # "left": gone for good, not a broken connection that a peer's live link may outlast.
    assert plain(notice) == {"room": room, "device": bob.key.device_id, "user": bob.username,
                             "reason": "left"}


def test_a_peer_that_left_is_missing_from_later_rosters(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice, bob, carol = accounts("alice"), accounts("bob"), accounts("carol")
    first, second = peers(alice), peers(bob)
    first.join(room)
    second.join(room)
    second.call("leave", {"room": room})
    assert plain(peers(carol).join(room)["peers"]) == [roster_entry(alice)]


def test_a_peer_that_left_no_longer_hears_the_room(accounts: Accounts, peers: Peers) -> None:
    room, other_room = unique_name("room"), unique_name("room")
    alice, bob, carol = accounts("alice"), accounts("bob"), accounts("carol")
    first, second, third = peers(alice), peers(bob), peers(carol)
    first.join(room)
    second.join(room)
    second.call("leave", {"room": room})
    second.join(other_room)
    third.join(room)
    third.join(other_room)  # reaches bob after carol's join of `room` would have
    second.wait_for("peer_joined")
    assert [d["room"] for d in second.received("peer_joined")] == [other_room]


def test_disconnect_sends_peer_left_to_the_others(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    first, second = peers(alice), peers(bob)
    first.join(room)
    second.join(room)
    second.client.disconnect()
    notice = first.wait_for("peer_left")
    assert plain(notice) == {"room": room, "device": bob.key.device_id, "user": bob.username}


def test_a_dropped_peer_is_missing_from_later_rosters(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice, bob, carol = accounts("alice"), accounts("bob"), accounts("carol")
    first, second = peers(alice), peers(bob)
    first.join(room)
    second.join(room)
    drop_peer(second)
    first.wait_for("peer_left")
    assert plain(peers(carol).join(room)["peers"]) == [roster_entry(alice)]


def test_dropped_connection_sends_peer_left_in_every_room_the_peer_was_in(
    accounts: Accounts, peers: Peers,
) -> None:
    rooms = [unique_name("room"), unique_name("room")]
    alice, bob = accounts("alice"), accounts("bob")
    first, second = peers(alice), peers(bob)
    for room in rooms:
        first.join(room)
        second.join(room)
    drop_peer(second)
    for room in rooms:
        notice = first.wait_for("peer_left", lambda d, room=room: d["room"] == room)
        assert plain(notice) == {"room": room, "device": bob.key.device_id, "user": bob.username}


def test_rejoining_from_a_new_connection_replaces_the_old_entry(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice, bob, carol = accounts("alice"), accounts("bob"), accounts("carol")
    peers(alice).join(room)
    peers(bob).join(room, rendezvous="192.0.2.1:1000")
    peers(bob).join(room, rendezvous="192.0.2.1:2000")
    assert plain(peers(carol).join(room)["peers"]) == [
        roster_entry(alice), roster_entry(bob, "192.0.2.1:2000")]


MALFORMED_JOINS: list[Any] = [
    {"device": "0" * 32},
    {"room": "lobby"},
    {"room": "lobby", "device": "0" * 32, "extra": 1},
    {"room": 7, "device": "0" * 32},
    {"room": "lobby", "device": 7},
    {"room": "lobby", "device": "not a device id"},
    {"room": "lobby", "device": "0" * 32, "rendezvous": 80},
    {"room": ["lobby"], "device": "0" * 32},
    "lobby",
    ["lobby", "0" * 32],
    42,
    None,
]


@pytest.mark.parametrize("payload", MALFORMED_JOINS)
def test_malformed_join_is_refused_and_the_connection_stays_usable(
    accounts: Accounts, peers: Peers, payload: Any,
) -> None:
    alice = accounts("alice")
    peer = peers(alice)
    reply = peer.call("join", payload)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["message"]
    assert peer.join(unique_name("room"))["ok"] is True


def test_leave_with_a_malformed_payload_is_refused(accounts: Accounts, peers: Peers) -> None:
    reply = peers(accounts("alice")).call("leave", {"room": "lobby", "extra": True})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"


def test_presence_epochs_order_a_devices_joins_and_leaves(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    first = peers(alice)
    first.join(room)
    earlier = peers(bob).join(room)["you"]["epoch"]
    later = peers(bob).join(room)["you"]["epoch"]
    assert isinstance(earlier, int) and later > earlier
    # The broadcast of bob's second join may reach alice after bob's reply: wait for it.
    first.wait_for("peer_joined", lambda d: d["peer"]["epoch"] == later)
    joined = [d["peer"]["epoch"] for d in first.received("peer_joined")]
    assert joined == sorted(joined) and joined[-1] == later
    again = peers(bob)
    again.join(room)
    assert again.call("leave", {"room": room})["ok"]
    left = first.wait_for("peer_left")
    assert left["epoch"] > later
