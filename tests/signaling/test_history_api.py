"""The history API: messages after a server cursor in insertion order, and the room's keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from protocol import DeviceKey, Envelope
from tests.signaling.conftest import (
    Account,
    Peer,
    ServerProcess,
    connect_peer,
    drop_peer,
    register_account,
    signed_envelope,
    unique_name,
)

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]


@dataclass
class FilledRoom:
    """A room holding `ids` (in upload order, with their cursors), read by `reader`."""

    name: str
    ids: list[str]
    cursors: list[int]
    reader: Account
    author: Account


def fill_room(server: ServerProcess, count: int) -> FilledRoom:
    """Upload `count` messages, in batches of 100, with Lamport times running backwards so
    that insertion order and display order differ."""
    author = register_account(server.url, "author")
    room = unique_name("history")
    peer = connect_peer(author)
    try:
        assert peer.join(room)["ok"]
        ids: list[str] = []
        cursors: list[int] = []
        for start in range(1, count + 1, 100):
            batch = [signed_envelope(author, room, seq, lamport=count + 1 - seq)
                     for seq in range(start, min(start + 100, count + 1))]
            results = peer.call("publish", {"envelopes": batch})["results"]
            assert all(r["ok"] for r in results), results
            ids += [r["id"] for r in results]
            cursors += [r["cursor"] for r in results]
    finally:
        drop_peer(peer)
    return FilledRoom(room, ids, cursors, register_account(server.url, "reader"), author)


@pytest.fixture(scope="module")
def room_of_250(server: ServerProcess) -> FilledRoom:
    return fill_room(server, 250)


@pytest.fixture(scope="module")
def room_of_501(server: ServerProcess) -> FilledRoom:
    return fill_room(server, 501)


def page(reader: Account, room: str, **params: Any) -> requests.Response:
    return reader.get(f"/api/rooms/{room}/messages", params=params)


def walk(room: FilledRoom, limit: int) -> Iterator[dict[str, Any]]:
    """Every page of the room from the start, following `next`."""
    after: int | None = 0
    while after is not None:
        reply = page(room.reader, room.name, after=after, limit=limit)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        yield body
        after = body["next"]


def test_pages_of_100_walk_250_messages_in_insertion_order(room_of_250: FilledRoom) -> None:
    pages = list(walk(room_of_250, 100))
    assert [len(p["messages"]) for p in pages] == [100, 100, 50]
    ids = [m["id"] for p in pages for m in p["messages"]]
    assert ids == room_of_250.ids
    assert len(set(ids)) == 250


def test_next_is_the_cursor_of_the_last_message_of_a_full_page(
    room_of_250: FilledRoom,
) -> None:
    pages = list(walk(room_of_250, 100))
    assert [p["next"] for p in pages] == [
        pages[0]["messages"][-1]["cursor"], pages[1]["messages"][-1]["cursor"], None]
    assert [m["cursor"] for p in pages for m in p["messages"]] == room_of_250.cursors


def test_messages_carry_the_whole_signed_envelope(room_of_250: FilledRoom) -> None:
    first = page(room_of_250.reader, room_of_250.name, limit=1).json()["messages"][0]
    envelope = Envelope.from_dict({k: v for k, v in first.items() if k not in ("id", "cursor")})
    envelope.verify(room_of_250.author.key.public_key_b64)
    assert first["id"] == envelope.id == room_of_250.ids[0]
    assert (first["room"], first["author"]) == (room_of_250.name, room_of_250.author.username)


def test_default_page_is_100_messages(room_of_250: FilledRoom) -> None:
    body = page(room_of_250.reader, room_of_250.name).json()
    assert [m["id"] for m in body["messages"]] == room_of_250.ids[:100]
    assert body["next"] == room_of_250.cursors[99]


def test_limit_above_500_is_clamped_to_500(room_of_501: FilledRoom) -> None:
    body = page(room_of_501.reader, room_of_501.name, limit=100_000).json()
    assert [m["id"] for m in body["messages"]] == room_of_501.ids[:500]
    assert body["next"] == room_of_501.cursors[499]


def test_limit_of_500_reads_a_room_of_501_in_two_pages(room_of_501: FilledRoom) -> None:
    assert [len(p["messages"]) for p in walk(room_of_501, 500)] == [500, 1]


@pytest.mark.parametrize("limit", [0, -5])
def test_limit_below_1_is_raised_to_1(room_of_250: FilledRoom, limit: int) -> None:
    body = page(room_of_250.reader, room_of_250.name, limit=limit).json()
    assert [m["id"] for m in body["messages"]] == room_of_250.ids[:1]
    assert body["next"] == room_of_250.cursors[0]


@pytest.mark.parametrize(("name", "value"), [("limit", "abc"), ("limit", "1.5"),
                                             ("after", "abc"), ("after", "0x10")])
def test_query_argument_that_is_not_an_integer_is_400(
    room_of_250: FilledRoom, name: str, value: str,
) -> None:
    reply = page(room_of_250.reader, room_of_250.name, **{name: value})
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "code": "invalid_argument", "message": f"{name} must be an integer"}


def test_after_the_last_cursor_gives_no_messages_and_next_null(room_of_250: FilledRoom) -> None:
    body = page(room_of_250.reader, room_of_250.name, after=room_of_250.cursors[-1]).json()
    assert body == {"room": room_of_250.name, "messages": [], "next": None}


def test_after_far_beyond_the_end_gives_no_messages_and_next_null(
    room_of_250: FilledRoom,
) -> None:
    body = page(room_of_250.reader, room_of_250.name, after=10**30).json()
    assert (body["messages"], body["next"]) == ([], None)


def test_after_a_middle_cursor_starts_right_after_it(room_of_250: FilledRoom) -> None:
    body = page(room_of_250.reader, room_of_250.name, after=room_of_250.cursors[122],
                limit=3).json()
    assert [m["id"] for m in body["messages"]] == room_of_250.ids[123:126]


def test_room_name_in_the_path_is_normalised(room_of_250: FilledRoom) -> None:
    body = page(room_of_250.reader, room_of_250.name.upper(), limit=1).json()
    assert body["room"] == room_of_250.name
    assert body["messages"][0]["id"] == room_of_250.ids[0]


def test_messages_of_an_unknown_room_are_404(accounts: Accounts) -> None:
    reply = page(accounts("reader"), unique_name("nowhere"))
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "no_such_room"


def test_messages_of_an_invalid_room_name_are_400(accounts: Accounts) -> None:
    reply = page(accounts("reader"), "no;such;room")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_room"


def test_messages_without_a_token_are_401(server: ServerProcess, room_of_250: FilledRoom) -> None:
    reply = requests.get(f"{server.url}/api/rooms/{room_of_250.name}/messages", timeout=10)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"


def test_room_keys_list_every_device_of_every_member(accounts: Accounts, peers: Peers) -> None:
    room = unique_name("room")
    alice, bob, outsider = accounts("alice"), accounts("bob"), accounts("outsider")
    second_key = DeviceKey.generate()
    assert alice.post("/api/devices", json={"public_key": second_key.public_key_b64}).ok
    for account in (alice, bob):
        peer = peers(account)
        assert peer.join(room)["ok"]
        drop_peer(peer)  # keys of members who are offline are listed too
    reply = outsider.get(f"/api/rooms/{room}/keys")
    assert reply.status_code == 200, reply.text
    expected = [
        {"id": alice.key.device_id, "public_key": alice.key.public_key_b64,
         "user": alice.username},
        {"id": second_key.device_id, "public_key": second_key.public_key_b64,
         "user": alice.username},
        {"id": bob.key.device_id, "public_key": bob.key.public_key_b64, "user": bob.username},
    ]
    assert reply.json() == {"devices": sorted(expected, key=lambda d: d["id"])}


def test_room_keys_of_an_unknown_room_are_404(accounts: Accounts) -> None:
    reply = accounts("reader").get(f"/api/rooms/{unique_name('nowhere')}/keys")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "no_such_room"


def test_room_keys_without_a_token_are_401(server: ServerProcess) -> None:
    reply = requests.get(f"{server.url}/api/rooms/lobby/keys", timeout=10)
    assert reply.status_code == 401


def test_config_hands_out_no_ice_servers_by_default(accounts: Accounts) -> None:
    reply = accounts("config").get("/api/config")
    assert reply.status_code == 200
    assert reply.json() == {"ice_servers": [], "ice_ttl": None}
