"""Uploads to the room log: idempotent on the message id, verified against the author's
registered key, refused when forged or malformed, one result per envelope in a batch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from protocol import MAX_BATCH, MAX_TEXT_CHARS, DeviceKey, Envelope, b64encode
from tests.signaling.conftest import (
    Account,
    Peer,
    ServerProcess,
    drop_peer,
    signed_envelope,
    stored_count,
    unique_name,
)

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]


def member(accounts: Accounts, peers: Peers, room: str, prefix: str = "alice") -> Peer:
    peer = peers(accounts(prefix))
    assert peer.join(room)["ok"]
    return peer


def publish(peer: Peer, envelope: dict[str, Any]) -> Any:
    return peer.call("publish", {"envelope": envelope})


def stored_texts(account: Account, room: str) -> list[str]:
    reply = account.get(f"/api/rooms/{room}/messages", params={"limit": 500})
    assert reply.status_code == 200, reply.text
    return [m["text"] for m in reply.json()["messages"]]


def test_same_envelope_published_ten_times_is_stored_once(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    envelope = signed_envelope(alice.account, room, 1)
    acks = [publish(alice, envelope) for _ in range(10)]
    assert all(ack["ok"] for ack in acks)
    assert [ack["duplicate"] for ack in acks] == [False] + [True] * 9
    assert len({ack["cursor"] for ack in acks}) == 1
    assert {ack["id"] for ack in acks} == {f"{alice.account.key.device_id}:1"}
    assert stored_count(server, room) == 1


def test_publish_ack_carries_the_id_and_a_cursor_that_grows(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    first = publish(alice, signed_envelope(alice.account, room, 1))
    second = publish(alice, signed_envelope(alice.account, room, 2))
    device = alice.account.key.device_id
    assert first == {"ok": True, "id": f"{device}:1", "cursor": first["cursor"],
                     "duplicate": False}
    assert isinstance(first["cursor"], int)
    assert second["id"] == f"{device}:2"
    assert second["cursor"] > first["cursor"]


def test_stored_event_reaches_the_room(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room, "alice")
    bob = member(accounts, peers, room, "bob")
    ack = publish(alice, signed_envelope(alice.account, room, 1))
    notice = bob.wait_for("stored")
    assert notice == {"room": room, "messages": [{"id": ack["id"], "cursor": ack["cursor"]}]}
    assert alice.wait_for("stored") == notice


def test_stored_event_is_not_sent_again_for_a_duplicate(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room, "alice")
    bob = member(accounts, peers, room, "bob")
    envelope = signed_envelope(alice.account, room, 1)
    publish(alice, envelope)
    publish(alice, envelope)
    later = publish(alice, signed_envelope(alice.account, room, 2))
    bob.wait_for("stored", lambda d: d["messages"][0]["id"] == later["id"])
    assert [d["messages"][0]["id"] for d in bob.received("stored")] == [
        envelope["device"] + ":1", later["id"]]


def test_stored_event_does_not_reach_other_rooms(accounts: Accounts, peers: Peers) -> None:
    room, other = unique_name("room"), unique_name("room")
    alice = member(accounts, peers, room, "alice")
    bob = member(accounts, peers, other, "bob")
    publish(alice, signed_envelope(alice.account, room, 1))
    alice.join(other)
    publish(alice, signed_envelope(alice.account, other, 1))
    bob.wait_for("stored")
    assert [d["room"] for d in bob.received("stored")] == [other]


def test_envelope_with_text_altered_after_signing_is_refused(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    envelope = {**signed_envelope(alice.account, room, 1, text="pay bob 5"),
                "text": "pay bob 500"}
    reply = publish(alice, envelope)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_signature"
    assert stored_count(server, room) == 0


def test_envelope_signed_by_another_key_is_refused(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    genuine = Envelope.from_dict(signed_envelope(alice.account, room, 1))
    other_key = DeviceKey.generate()
    forged = {**genuine.to_dict(), "sig": b64encode(other_key.sign(genuine.signed_bytes()))}
    reply = publish(alice, forged)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_signature"
    assert stored_count(server, room) == 0


def test_envelope_claiming_another_author_is_refused(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room, "alice")
    mallory = member(accounts, peers, room, "mallory")
    forged = signed_envelope(mallory.account, room, 1, author=alice.account.username)
    reply = publish(mallory, forged)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unknown_author"
    assert stored_count(server, room) == 0


def test_envelope_from_an_unregistered_device_is_refused(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    reply = publish(alice, signed_envelope(alice.account, room, 1, key=DeviceKey.generate()))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unknown_author"
    assert stored_count(server, room) == 0


def _without(field: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda env: {k: v for k, v in env.items() if k != field}


def _with(field: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda env: {**env, field: value}


MALFORMED: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "missing sig": _without("sig"),
    "missing text": _without("text"),
    "extra field": _with("reply_to", "x"),
    "seq 0": _with("seq", 0),
    "negative lamport": _with("lamport", -1),
    "text too long": _with("text", "x" * (MAX_TEXT_CHARS + 1)),
    "bool for seq": _with("seq", True),
    "string for ts": _with("ts", "1700000000000"),
    "float for lamport": _with("lamport", 1.0),
    "room not in normal form": _with("room", "Lobby"),
    "malformed sig": _with("sig", "not a signature"),
    "empty text": _with("text", ""),
}


@pytest.mark.parametrize("breakage", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_envelope_is_refused_and_the_connection_stays_usable(
    server: ServerProcess, accounts: Accounts, peers: Peers,
    breakage: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    reply = publish(alice, breakage(signed_envelope(alice.account, room, 1)))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_envelope"
    assert reply["error"]["message"].startswith("envelope")
    assert publish(alice, signed_envelope(alice.account, room, 2))["ok"] is True
    assert stored_count(server, room) == 1


@pytest.mark.parametrize("request_body", [
    {},
    {"envelope": "not an object"},
    {"envelopes": "not a list"},
    {"envelope": {}, "envelopes": []},
    {"envelope": {}, "extra": 1},
    "envelope",
    None,
])
def test_malformed_publish_request_is_refused_and_the_connection_stays_usable(
    accounts: Accounts, peers: Peers, request_body: Any,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    reply = alice.call("publish", request_body)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert publish(alice, signed_envelope(alice.account, room, 1))["ok"] is True


def test_publishing_to_a_room_never_joined_is_refused(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room, elsewhere = unique_name("room"), unique_name("room")
    member(accounts, peers, room, "alice")
    bob = member(accounts, peers, elsewhere, "bob")
    reply = publish(bob, signed_envelope(bob.account, room, 1))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "not_in_room"
    assert stored_count(server, room) == 0


def test_publishing_to_a_room_that_does_not_exist_is_refused(
    accounts: Accounts, peers: Peers,
) -> None:
    alice = peers(accounts("alice"))
    reply = publish(alice, signed_envelope(alice.account, unique_name("nowhere"), 1))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "not_in_room"


def test_member_may_upload_a_message_of_a_member_who_has_disconnected(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room, "alice")
    bob = member(accounts, peers, room, "bob")
    held = signed_envelope(alice.account, room, 1, text="sent while the server was away")
    drop_peer(alice)
    bob.wait_for("peer_left")
    reply = publish(bob, held)
    assert reply["ok"] is True
    assert reply["id"] == f"{alice.account.key.device_id}:1"
    stored = bob.account.get(f"/api/rooms/{room}/messages").json()["messages"]
    assert [(m["author"], m["device"], m["text"]) for m in stored] == [
        (alice.account.username, alice.account.key.device_id, "sent while the server was away")]


def test_member_may_upload_on_behalf_while_the_author_is_connected(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room, "alice")
    bob = member(accounts, peers, room, "bob")
    held = signed_envelope(alice.account, room, 1)
    assert publish(bob, held)["duplicate"] is False
    assert publish(alice, held)["duplicate"] is True


def test_different_envelope_reusing_an_existing_id_is_a_conflict_and_the_original_is_kept(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    original = publish(alice, signed_envelope(alice.account, room, 1, text="first"))
    reply = publish(alice, signed_envelope(alice.account, room, 1, text="second"))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "conflict"
    assert original["id"] in reply["error"]["message"]
    assert stored_texts(alice.account, room) == ["first"]
    assert stored_count(server, room) == 1


def test_same_id_in_another_room_is_a_different_message(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room, other = unique_name("room"), unique_name("room")
    alice = member(accounts, peers, room)
    alice.join(other)
    assert publish(alice, signed_envelope(alice.account, room, 1))["duplicate"] is False
    assert publish(alice, signed_envelope(alice.account, other, 1))["duplicate"] is False
    assert (stored_count(server, room), stored_count(server, other)) == (1, 1)


def test_batch_gives_one_result_per_envelope(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room, "alice")
    mallory = accounts("mallory")
    batch = [signed_envelope(alice.account, room, seq) for seq in range(1, MAX_BATCH + 1)]
    batch[9] = {**batch[9], "text": "altered"}
    batch[41] = {**batch[41], "seq": 0}
    batch[77] = signed_envelope(mallory, room, 78, author=alice.account.username)
    batch[99] = {**batch[99], "unexpected": True}
    reply = alice.call("publish", {"envelopes": batch})
    assert reply["ok"] is True
    results = reply["results"]
    assert len(results) == MAX_BATCH
    refused = {i: r["error"]["code"] for i, r in enumerate(results) if not r["ok"]}
    assert refused == {9: "bad_signature", 41: "invalid_envelope", 77: "unknown_author",
                       99: "invalid_envelope"}
    accepted = [r for r in results if r["ok"]]
    device = alice.account.key.device_id
    assert [r["id"] for r in accepted] == [
        f"{device}:{i + 1}" for i in range(MAX_BATCH) if i not in refused]
    cursors = [r["cursor"] for r in accepted]
    assert cursors == sorted(set(cursors))
    assert results[9]["id"] == f"{device}:10"
    assert stored_count(server, room) == MAX_BATCH - 4


def test_batch_with_the_same_envelope_twice_stores_it_once(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    envelope = signed_envelope(alice.account, room, 1)
    results = alice.call("publish", {"envelopes": [envelope, envelope]})["results"]
    assert [(r["ok"], r["duplicate"]) for r in results] == [(True, False), (True, True)]
    assert results[0]["cursor"] == results[1]["cursor"]
    assert stored_count(server, room) == 1


def test_batch_retried_after_success_is_all_duplicates_with_the_same_cursors(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    batch = [signed_envelope(alice.account, room, seq) for seq in range(1, 21)]
    first = alice.call("publish", {"envelopes": batch})["results"]
    again = alice.call("publish", {"envelopes": batch})["results"]
    assert [r["cursor"] for r in again] == [r["cursor"] for r in first]
    assert all(r["duplicate"] for r in again)
    assert stored_count(server, room) == 20


def test_batch_of_more_than_100_envelopes_is_refused(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    batch = [signed_envelope(alice.account, room, seq) for seq in range(1, MAX_BATCH + 2)]
    reply = alice.call("publish", {"envelopes": batch})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["message"].startswith("envelopes:")
    assert stored_count(server, room) == 0


def test_empty_batch_stores_nothing(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice = member(accounts, peers, room)
    assert alice.call("publish", {"envelopes": []}) == {"ok": True, "results": []}
    assert stored_count(server, room) == 0


def test_same_envelope_uploaded_at_once_by_several_members_is_stored_once(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    uploaders = [member(accounts, peers, room, f"member{i}") for i in range(6)]
    envelope = signed_envelope(uploaders[0].account, room, 1)
    start = threading.Barrier(len(uploaders))
    acks: list[Any] = [None] * len(uploaders)

    def upload(index: int) -> None:
        start.wait(timeout=10)
        acks[index] = publish(uploaders[index], envelope)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(uploaders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(ack["ok"] for ack in acks), acks
    assert sorted(ack["duplicate"] for ack in acks) == [False] + [True] * 5
    assert len({ack["cursor"] for ack in acks}) == 1
    assert stored_count(server, room) == 1
