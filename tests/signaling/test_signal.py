"""The offer/answer/candidate relay: forwarded to one device of a shared room, sender set by the
server, refused across rooms and for anything malformed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.signaling.conftest import Account, Peer, unique_name

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}


def signal(sender: Peer, room: str, target: Account, kind: str = "offer",
           payload: dict[str, Any] | None = None) -> Any:
    return sender.call("signal", {"room": room, "to": target.key.device_id, "kind": kind,
                                  "payload": OFFER if payload is None else payload})


def sender_of(peer: Peer) -> dict[str, str]:
    """The `from` the server must put on a signal sent by `peer`."""
    key = peer.account.key
    return {"user": peer.account.username, "device": key.device_id,
            "public_key": key.public_key_b64}


def pair_in_room(accounts: Accounts, peers: Peers) -> tuple[str, Peer, Peer]:
    """A fresh room holding two peers, alice's and bob's."""
    room = unique_name("room")
    alice, bob = peers(accounts("alice")), peers(accounts("bob"))
    assert alice.join(room)["ok"] and bob.join(room)["ok"]
    return room, alice, bob


def test_offer_is_forwarded_to_the_target_with_the_sender_set_by_the_server(
    accounts: Accounts, peers: Peers,
) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    assert signal(alice, room, bob.account) == {"ok": True}
    got = bob.wait_for("signal")
    assert isinstance(got["from"].pop("epoch"), int)  # the sender's presence epoch
    assert got == {"room": room, "from": sender_of(alice), "kind": "offer", "payload": OFFER}


@pytest.mark.parametrize("kind", ["answer", "candidate"])
def test_answers_and_candidates_are_forwarded(
    accounts: Accounts, peers: Peers, kind: str,
) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    payload = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host"}
    assert signal(alice, room, bob.account, kind, payload)["ok"] is True
    received = bob.wait_for("signal")
    assert (received["kind"], received["payload"]) == (kind, payload)


def test_signal_reaches_only_its_target(accounts: Accounts, peers: Peers) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    carol = peers(accounts("carol"))
    carol.join(room)
    signal(alice, room, bob.account)
    signal(alice, room, carol.account, payload={"marker": "for carol"})
    carol.wait_for("signal")
    bob.wait_for("signal")
    assert [d["payload"] for d in carol.received("signal")] == [{"marker": "for carol"}]
    assert [d["payload"] for d in bob.received("signal")] == [OFFER]


def test_forged_from_in_the_payload_stays_inside_the_payload(
    accounts: Accounts, peers: Peers,
) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    forged = {**OFFER, "from": {"user": "admin", "device": "f" * 32, "public_key": "A" * 43}}
    assert signal(alice, room, bob.account, payload=forged)["ok"] is True
    received = bob.wait_for("signal")
    assert received["payload"] == forged
    assert {k: v for k, v in received["from"].items() if k != "epoch"} == sender_of(alice)


@pytest.mark.parametrize("extra", [
    {"from": {"user": "admin", "device": "f" * 32}},
    {"user": "admin"},
    {"broadcast": True},
])
def test_signal_with_an_extra_top_level_field_is_refused(
    accounts: Accounts, peers: Peers, extra: dict[str, Any],
) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    reply = alice.call("signal", {"room": room, "to": bob.account.key.device_id,
                                  "kind": "offer", "payload": OFFER, **extra})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    signal(alice, room, bob.account, payload={"marker": "after"})
    bob.wait_for("signal")
    assert [d["payload"] for d in bob.received("signal")] == [{"marker": "after"}]


def test_signal_is_not_forwarded_across_rooms(accounts: Accounts, peers: Peers) -> None:
    room_a, room_b = unique_name("room-a"), unique_name("room-b")
    alice, bob = peers(accounts("alice")), peers(accounts("bob"))
    alice.join(room_a)
    bob.join(room_b)
    reply = signal(alice, room_a, bob.account)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "no_such_peer"
    # A signal that must arrive after the refused one would have.
    alice.join(room_b)
    assert signal(alice, room_b, bob.account, payload={"marker": "after"})["ok"] is True
    bob.wait_for("signal")
    assert [(d["room"], d["payload"]) for d in bob.received("signal")] == [
        (room_b, {"marker": "after"})]


def test_signal_naming_a_room_the_sender_has_not_joined_is_refused(
    accounts: Accounts, peers: Peers,
) -> None:
    room_a, room_b = unique_name("room-a"), unique_name("room-b")
    alice, bob = peers(accounts("alice")), peers(accounts("bob"))
    alice.join(room_a)
    bob.join(room_b)
    reply = signal(alice, room_b, bob.account)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "not_in_room"
    alice.join(room_b)
    signal(alice, room_b, bob.account, payload={"marker": "after"})
    bob.wait_for("signal")
    assert [d["payload"] for d in bob.received("signal")] == [{"marker": "after"}]


def test_signal_from_a_sender_who_has_not_joined_is_refused(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice, bob = peers(accounts("alice")), peers(accounts("bob"))
    bob.join(room)
    reply = signal(alice, room, bob.account)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "not_in_room"
    alice.join(room)
    signal(alice, room, bob.account, payload={"marker": "after"})
    bob.wait_for("signal")
    assert [d["payload"] for d in bob.received("signal")] == [{"marker": "after"}]


def test_signal_from_a_peer_that_left_is_refused(accounts: Accounts, peers: Peers) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    alice.call("leave", {"room": room})
    reply = signal(alice, room, bob.account)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "not_in_room"


def test_signal_to_a_peer_that_left_is_refused(accounts: Accounts, peers: Peers) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    bob.call("leave", {"room": room})
    alice.wait_for("peer_left")
    reply = signal(alice, room, bob.account)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "no_such_peer"


def test_signal_to_a_room_that_does_not_exist_is_refused(
    accounts: Accounts, peers: Peers,
) -> None:
    alice, bob = peers(accounts("alice")), accounts("bob")
    reply = signal(alice, unique_name("nowhere"), bob)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "not_in_room"


@pytest.mark.parametrize("kind", ["bye", "OFFER", "", "renegotiate"])
def test_signal_of_an_unknown_kind_is_refused(
    accounts: Accounts, peers: Peers, kind: str,
) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    reply = signal(alice, room, bob.account, kind)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["message"].startswith("kind:")


@pytest.mark.parametrize("payload", ["v=0", ["v=0"], None, 5])
def test_signal_whose_payload_is_not_an_object_is_refused(
    accounts: Accounts, peers: Peers, payload: Any,
) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    reply = alice.call("signal", {"room": room, "to": bob.account.key.device_id,
                                  "kind": "offer", "payload": payload})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"


def sized_payload(size: int) -> dict[str, str]:
    """A payload whose compact JSON is exactly `size` bytes."""
    return {"sdp": "x" * (size - len('{"sdp":""}'))}


def test_signal_payload_of_exactly_16_kib_is_forwarded(accounts: Accounts, peers: Peers) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    payload = sized_payload(16_384)
    assert signal(alice, room, bob.account, payload=payload)["ok"] is True
    assert bob.wait_for("signal")["payload"] == payload


def test_signal_payload_over_16_kib_is_refused(accounts: Accounts, peers: Peers) -> None:
    room, alice, bob = pair_in_room(accounts, peers)
    reply = signal(alice, room, bob.account, payload=sized_payload(16_385))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert "16384 bytes" in reply["error"]["message"]
    signal(alice, room, bob.account, payload={"marker": "after"})
    bob.wait_for("signal")
    assert [d["payload"] for d in bob.received("signal")] == [{"marker": "after"}]
