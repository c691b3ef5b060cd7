"""Private rooms and direct messages: the member list the server enforces for join, signal,
publish, history (API and pages) and keys, and public rooms as they were."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.signaling.conftest import Account, Peer, ServerProcess, signed_envelope, unique_name
from tests.signaling.test_pages import Browser, signed_in

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]


def create(owner: Account, name: str, *, private: bool = True,
           members: list[Account] | None = None) -> requests.Response:
    return owner.post("/api/rooms", json={
        "name": name, "private": private, "members": [m.username for m in members or []]})


def private_room(owner: Account, *members: Account) -> str:
    """A new private room of `owner` with `members` on its list; returns its name."""
    name = unique_name("private")
    reply = create(owner, name, members=list(members))
    assert reply.status_code == 201, reply.text
    return name


def remove(actor: Account, room: str, username: str) -> requests.Response:
    return requests.delete(f"{actor.server_url}/api/rooms/{room}/members/{username}",
                           headers=actor.headers, timeout=10)


def error_code(reply: Any) -> str:
    body = reply.json() if isinstance(reply, requests.Response) else reply
    return str(body["error"]["code"])


def sign_in(server: ServerProcess, account: Account) -> Browser:
    return signed_in(Browser(server.url), account)


@pytest.fixture
def browsers(server: ServerProcess) -> Iterator[Callable[[Account], Browser]]:
    made: list[Browser] = []

    def make(account: Account) -> Browser:
        made.append(sign_in(server, account))
        return made[-1]

    yield make
    for browser in made:
        browser.session.close()


def test_private_room_lists_its_owner_and_members(accounts: Accounts) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    name = unique_name("private")
    reply = create(alice, name, members=[bob])
    assert reply.status_code == 201
    assert reply.json() == {"room": name, "kind": "private", "owner": alice.username,
                            "members": sorted([alice.username, bob.username])}


def test_a_taken_name_cannot_be_created_again(accounts: Accounts, peers: Peers) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    public = unique_name("public")
    assert peers(alice).join(public)["ok"]
    reply = create(mallory, public)
    assert reply.status_code == 409 and error_code(reply) == "room_exists"
    taken = private_room(alice)
    assert error_code(create(mallory, taken, private=False)) == "room_exists"


def test_non_member_cannot_join_a_private_room(accounts: Accounts, peers: Peers) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    room = private_room(alice)
    reply = peers(mallory).join(room)
    assert reply["ok"] is False and error_code(reply) == "not_a_member"
    # The refusal created nothing: the room is still private, with alice alone on it.
    assert alice.get(f"/api/rooms/{room}/members").json()["members"] == [alice.username]


def test_member_joins_and_gets_the_member_list(accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    room = private_room(alice, bob)
    assert peers(alice).join(room)["ok"]
    reply = peers(bob).join(room)
    assert reply["ok"] is True
    assert (reply["kind"], reply["owner"]) == ("private", alice.username)
    assert reply["members"] == sorted([alice.username, bob.username])
    assert [p["user"] for p in reply["peers"]] == [alice.username]


def test_join_of_an_unknown_name_still_makes_a_public_room(accounts: Accounts,
                                                           peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    room = unique_name("open")
    reply = peers(alice).join(room)
    assert (reply["kind"], reply["owner"], reply["members"]) == ("public", None, None)
    assert peers(bob).join(room)["ok"]
    assert bob.get(f"/api/rooms/{room}/messages").status_code == 200


def test_non_member_cannot_read_a_private_rooms_history(accounts: Accounts,
                                                        peers: Peers) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    room = private_room(alice)
    owner = peers(alice)
    owner.join(room)
    assert owner.call("publish", {"envelope": signed_envelope(alice, room, 1)})["ok"]
    refused = mallory.get(f"/api/rooms/{room}/messages")
    assert refused.status_code == 403 and error_code(refused) == "not_a_member"
    assert "message 1" not in refused.text
    assert len(alice.get(f"/api/rooms/{room}/messages").json()["messages"]) == 1


def test_keys_of_a_private_room_are_its_members_and_only_for_them(
        accounts: Accounts, peers: Peers) -> None:
    alice, bob, mallory = accounts("alice"), accounts("bob"), accounts("mallory")
    room = private_room(alice, bob)
    refused = mallory.get(f"/api/rooms/{room}/keys")
    assert refused.status_code == 403 and error_code(refused) == "not_a_member"
    keys = bob.get(f"/api/rooms/{room}/keys").json()["devices"]
    assert sorted(k["user"] for k in keys) == sorted([alice.username, bob.username])


def test_non_member_cannot_publish_into_a_private_room(accounts: Accounts,
                                                       peers: Peers) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    room = private_room(alice)
    reply = peers(mallory).call("publish", {"envelope": signed_envelope(mallory, room, 1)})
    assert reply["ok"] is False and error_code(reply) == "not_a_member"
    assert alice.get(f"/api/rooms/{room}/messages").json()["messages"] == []


def test_member_cannot_upload_an_envelope_authored_by_a_non_member(
        accounts: Accounts, peers: Peers) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    room = private_room(alice)
    owner = peers(alice)
    owner.join(room)
    forged = signed_envelope(mallory, room, 1)  # signed by mallory's registered key
    reply = owner.call("publish", {"envelopes": [forged, signed_envelope(alice, room, 1)]})
    first, second = reply["results"]
    assert first["ok"] is False and error_code(first) == "author_not_a_member"
    assert second["ok"] is True
    assert [m["author"] for m in alice.get(f"/api/rooms/{room}/messages").json()["messages"]] \
        == [alice.username]


def test_removed_member_leaves_at_once_and_can_no_longer_signal(
        accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    room = private_room(alice, bob)
    owner, member = peers(alice), peers(bob)
    owner.join(room)
    member.join(room)
    offer = {"room": room, "kind": "offer", "payload": {"sdp": "v=0"}}
    assert member.call("signal", {**offer, "to": alice.key.device_id})["ok"]
    assert remove(alice, room, bob.username).status_code == 200
    assert member.wait_for("removed") == {"room": room}
    assert owner.wait_for("peer_left") == {"room": room, "device": bob.key.device_id,
                                           "user": bob.username}
    assert owner.wait_for("members")["members"] == [alice.username]
    from_bob = member.call("signal", {**offer, "to": alice.key.device_id})
    assert from_bob["ok"] is False and error_code(from_bob) == "not_in_room"
    to_bob = owner.call("signal", {**offer, "to": bob.key.device_id})
    assert to_bob["ok"] is False and error_code(to_bob) == "no_such_peer"
    assert error_code(member.join(room)) == "not_a_member"
    assert error_code(bob.get(f"/api/rooms/{room}/messages")) == "not_a_member"


def test_removed_member_no_longer_hears_the_room(accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    room = private_room(alice, bob)
    owner, member = peers(alice), peers(bob)
    owner.join(room)
    member.join(room)
    assert remove(alice, room, bob.username).status_code == 200
    member.wait_for("removed")
    assert owner.call("publish", {"envelope": signed_envelope(alice, room, 1)})["ok"]
    # A later reply on bob's own connection comes after anything sent to him before it.
    assert member.join(unique_name("elsewhere"))["ok"]
    assert [s for s in member.received("stored") if s["room"] == room] == []


def test_owner_adds_a_member_who_may_then_join(accounts: Accounts, peers: Peers) -> None:
    alice, dave = accounts("alice"), accounts("dave")
    room = private_room(alice)
    owner = peers(alice)
    owner.join(room)
    added = alice.post(f"/api/rooms/{room}/members", json={"username": dave.username})
    assert added.status_code == 201
    assert owner.wait_for("members")["members"] == sorted([alice.username, dave.username])
    assert peers(dave).join(room)["ok"]


def test_only_the_owner_manages_the_member_list(accounts: Accounts) -> None:
    alice, bob, carol = accounts("alice"), accounts("bob"), accounts("carol")
    room = private_room(alice, bob)
    added = bob.post(f"/api/rooms/{room}/members", json={"username": carol.username})
    assert added.status_code == 403 and error_code(added) == "not_owner"
    outsider = carol.post(f"/api/rooms/{room}/members", json={"username": carol.username})
    assert error_code(outsider) == "not_a_member"
    assert error_code(remove(bob, room, alice.username)) == "owner_stays"
    assert remove(bob, room, bob.username).status_code == 200  # a member may leave
    assert alice.get(f"/api/rooms/{room}/members").json()["members"] == [alice.username]


def test_public_room_has_no_member_list_to_manage(accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    room = unique_name("open")
    peers(alice).join(room)
    reply = alice.post(f"/api/rooms/{room}/members", json={"username": bob.username})
    assert reply.status_code == 409 and error_code(reply) == "public_room"


def test_direct_room_is_the_same_from_both_sides(accounts: Accounts) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    first = alice.post("/api/dm", json={"username": bob.username})
    again = bob.post("/api/dm", json={"username": alice.username})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["kind"] == "direct" and first.json()["room"].startswith("dm-")
    assert first.json()["members"] == sorted([alice.username, bob.username])


def test_direct_room_keeps_exactly_its_two_users(accounts: Accounts, peers: Peers) -> None:
    alice, bob, mallory = accounts("alice"), accounts("bob"), accounts("mallory")
    room = alice.post("/api/dm", json={"username": bob.username}).json()["room"]
    added = alice.post(f"/api/rooms/{room}/members", json={"username": mallory.username})
    assert added.status_code == 409 and error_code(added) == "direct_room"
    assert error_code(remove(alice, room, bob.username)) == "direct_room"
    assert error_code(peers(mallory).join(room)) == "not_a_member"
    assert error_code(mallory.get(f"/api/rooms/{room}/messages")) == "not_a_member"
    assert peers(bob).join(room)["ok"]


def test_direct_names_are_never_given_to_other_rooms(accounts: Accounts, peers: Peers) -> None:
    alice, bob = accounts("alice"), accounts("bob")
    assert error_code(alice.post("/api/dm", json={"username": alice.username})) \
        == "invalid_member"
    assert error_code(alice.post("/api/dm", json={"username": unique_name("nobody")})) \
        == "no_such_user"
    squatted = "dm-" + unique_name("x")
    assert error_code(create(alice, squatted, private=False)) == "reserved_name"
    # A join never makes a dm- room; the answer is the one a stranger gets for a real DM.
    assert error_code(peers(bob).join(squatted)) == "not_a_member"


def test_room_list_shows_kinds_and_cursors_and_hides_others_private_rooms(
        accounts: Accounts, peers: Peers) -> None:
    alice, bob, mallory = accounts("alice"), accounts("bob"), accounts("mallory")
    room = private_room(alice, bob)
    dm = alice.post("/api/dm", json={"username": bob.username}).json()["room"]
    owner = peers(alice)
    owner.join(room)
    cursor = owner.call("publish", {"envelope": signed_envelope(alice, room, 1)})["cursor"]
    listed = {r["room"]: r for r in bob.get("/api/rooms").json()["rooms"]}
    assert listed[room] == {"room": room, "kind": "private", "owner": alice.username,
                            "members": sorted([alice.username, bob.username]),
                            "cursor": cursor}
    assert listed[dm]["kind"] == "direct" and listed[dm]["cursor"] == 0
    assert mallory.get("/api/rooms").json()["rooms"] == []


def test_non_member_cannot_open_a_private_rooms_pages(
        accounts: Accounts, peers: Peers, browsers: Callable[[Account], Browser]) -> None:
    alice, mallory = accounts("alice"), accounts("mallory")
    room = private_room(alice)
    owner = peers(alice)
    owner.join(room)
    owner.call("publish", {"envelope": signed_envelope(alice, room, 1, text="secret plans")})
    stranger = browsers(mallory)
    for path in (f"/rooms/{room}/history", f"/rooms/{room}", f"/rooms/{room}/history?q=secret"):
        page = stranger.get(path)
        assert page.status_code == 403, path
        assert "secret plans" not in page.text
    assert room not in stranger.get("/").text
    member = browsers(alice)
    assert "secret plans" in member.get(f"/rooms/{room}/history").text
    assert member.get(f"/rooms/{room}").status_code == 200


@pytest.mark.parametrize(("body", "code"), [
    ({"name": "x", "private": "yes"}, "invalid_request"),
    ({"name": "x", "private": True, "members": "bob"}, "invalid_request"),
    ({"name": "x", "private": False, "members": ["bob"]}, "invalid_request"),
    ({"name": 7, "private": True}, "invalid_room"),
    ({"name": "no spaces", "private": True}, "invalid_room"),
    ({"name": "x", "private": True, "members": [["nested"]]}, "invalid_username"),
    ({"name": "x", "private": True, "members": ["a"] * 300}, "too_many_members"),
], ids=["private-not-bool", "members-not-list", "public-with-members", "name-not-text",
        "bad-name", "member-not-text", "too-many"])
def test_a_malformed_room_is_refused_with_a_reason(accounts: Accounts, body: dict[str, Any],
                                                   code: str) -> None:
    reply = accounts("alice").post("/api/rooms", json=body)
    assert reply.status_code == 400 and error_code(reply) == code, reply.text
