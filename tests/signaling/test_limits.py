"""Size and rate limits: oversized requests and socket messages are refused without harming
anyone else, and sign-in, join (per room, and for all rooms together), making rooms, signal
and publish are rate limited per user."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import poll
from tests.signaling.conftest import (
    PASSWORD,
    Account,
    Peer,
    ServerProcess,
    connect_peer,
    database_for,
    drop_peer,
    register_account,
    signed_envelope,
    start_server,
    unique_name,
)

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]

LOW_LIMITS = {
    "RATELIMIT_LOGIN": "3 per minute",
    "RATELIMIT_LOGIN_ADDRESS": "100000 per minute",
    "RATELIMIT_JOIN": "3 per minute",
    "RATELIMIT_JOIN_ROOM": "2 per minute",
    "RATELIMIT_JOIN_ROOMS": "4 per minute",
    "RATELIMIT_SIGNAL": "3 per minute",
    "RATELIMIT_PUBLISH": "5 per minute",
    "RATELIMIT_REGISTER": "100000 per minute",
}


@pytest.fixture(scope="module")
def limited_server(backend: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own with low limits, so that reaching them disturbs no other test."""
    workdir = tmp_path_factory.mktemp(f"limited-{backend}")
    with database_for(backend, workdir) as url:
        running = start_server(workdir, LOW_LIMITS, database_url=url)
        yield running
        running.stop()


@pytest.fixture
def limited_peers(limited_server: ServerProcess) -> Iterator[Callable[[str], Peer]]:
    """Connect a fresh account's peer to the limited server; all dropped at the end."""
    made: list[Peer] = []

    def make(prefix: str) -> Peer:
        peer = connect_peer(register_account(limited_server.url, prefix))
        made.append(peer)
        return peer

    yield make
    for peer in made:
        drop_peer(peer)


# Size limits, on the shared server.

def test_http_body_over_64_kib_is_413_with_a_json_error(server: ServerProcess) -> None:
    reply = requests.post(server.url + "/api/login",
                          json={"username": "x" * (64 * 1024), "password": PASSWORD}, timeout=10)
    assert reply.status_code == 413
    assert reply.json() == {"error": {"code": "too_large",
                                      "message": "request larger than 65536 bytes"}}


def test_http_body_over_64_kib_is_413_on_authenticated_routes(accounts: Accounts) -> None:
    reply = accounts("big").post("/api/devices", json={"public_key": "A" * (70 * 1024)})
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "too_large"


def test_http_body_just_under_64_kib_is_read(server: ServerProcess) -> None:
    body = '{"username": "' + "x" * (64 * 1024 - 100) + '", "password": "p"}'
    reply = requests.post(server.url + "/api/login", data=body,
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 401


def test_form_body_over_64_kib_is_413_on_a_page(server: ServerProcess) -> None:
    reply = requests.post(server.url + "/login", data={"username": "x" * (70 * 1024)},
                          timeout=10)
    assert reply.status_code == 413
    assert "request larger than 65536 bytes" in reply.text


def test_oversized_body_of_any_content_type_is_413(server: ServerProcess) -> None:
    reply = requests.post(server.url + "/api/login", data=b"x" * (70 * 1024),
                          headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "too_large"


def test_server_keeps_serving_after_an_oversized_http_body(server: ServerProcess) -> None:
    reply = requests.post(server.url + "/api/register",
                          json={"username": "x" * (5 * 1024 * 1024)}, timeout=30)
    assert reply.status_code == 413
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


def oversized_publish() -> dict[str, Any]:
    return {"envelope": {"text": "x" * (1024 * 1024 + 1)}}


def test_socket_message_over_1_mib_disconnects_that_client(
    accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    sender, witness = peers(accounts("big")), peers(accounts("witness"))
    sender.join(room)
    witness.join(room)
    sender.client.emit("publish", oversized_publish())
    poll(lambda: not sender.client.connected, message="the oversized sender to be cut off")
    notice = witness.wait_for("peer_left")
    assert notice["device"] == sender.account.key.device_id


def test_server_keeps_serving_others_after_an_oversized_socket_message(
    server: ServerProcess, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    sender, bystander = peers(accounts("big")), peers(accounts("bystander"))
    bystander.join(room)
    sender.client.emit("publish", oversized_publish())
    poll(lambda: not sender.client.connected, message="the oversized sender to be cut off")
    assert bystander.client.connected
    ack = bystander.call("publish", {"envelope": signed_envelope(bystander.account, room, 1)})
    assert ack["ok"] is True
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    newcomer = peers(accounts("newcomer"))
    assert newcomer.join(room)["peers"][0]["user"] == bystander.account.username


def test_socket_message_just_under_1_mib_is_answered(accounts: Accounts, peers: Peers) -> None:
    peer = peers(accounts("almost"))
    reply = peer.call("publish", {"envelope": {"text": "x" * (1000 * 1024)}})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_envelope"
    assert peer.client.connected


# Rate limits, on a server of their own.

def api_login(server: ServerProcess, username: str, password: str) -> requests.Response:
    return requests.post(server.url + "/api/login",
                         json={"username": username, "password": password}, timeout=10)


def test_login_over_the_limit_is_429_with_a_clear_message(limited_server: ServerProcess) -> None:
    account = register_account(limited_server.url, "login")
    for _ in range(3):
        assert api_login(limited_server, account.username, "wrong password").status_code == 401
    reply = api_login(limited_server, account.username, PASSWORD)
    assert reply.status_code == 429
    assert reply.json()["error"] == {
        "code": "rate_limited",
        "message": "too many requests: the limit is 3 per 1 minute; try again later"}


def test_login_limit_of_one_name_leaves_other_names_alone(limited_server: ServerProcess) -> None:
    victim, other = (register_account(limited_server.url, p) for p in ("victim", "other"))
    for _ in range(4):
        api_login(limited_server, victim.username, "wrong password")
    assert api_login(limited_server, victim.username, PASSWORD).status_code == 429
    assert api_login(limited_server, other.username, PASSWORD).status_code == 200


def test_one_address_trying_many_names_is_limited_too(backend: str, tmp_path: Path) -> None:
    with database_for(backend, tmp_path) as url:
        server = start_server(tmp_path / "per-address",
                              {"RATELIMIT_LOGIN_ADDRESS": "4 per minute"}, database_url=url)
        try:
            codes = [api_login(server, unique_name("guess"), "wrong password").status_code
                     for _ in range(5)]
        finally:
            server.stop()
    assert codes == [401, 401, 401, 401, 429]


def test_page_sign_in_over_the_limit_is_429(limited_server: ServerProcess) -> None:
    account = register_account(limited_server.url, "page")
    with requests.Session() as session:
        form = session.get(limited_server.url + "/", timeout=10).text
        match = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert match
        fields = {"csrf_token": match.group(1), "username": account.username,
                  "password": "wrong password"}
        codes = [session.post(limited_server.url + "/login", data=fields, timeout=10,
                              allow_redirects=False).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_joins_over_the_limit_for_all_rooms_are_refused(
        limited_peers: Callable[[str], Peer]) -> None:
    peer = limited_peers("joiner")
    replies = [peer.join(unique_name("room")) for _ in range(5)]
    assert [r["ok"] for r in replies] == [True, True, True, True, False]
    assert replies[4]["error"] == {
        "code": "rate_limited",
        "message": "too many join rooms requests: the limit is 4 per 1 minute"}


def test_joining_one_room_again_and_again_is_refused_and_other_rooms_stay_open(
        limited_peers: Callable[[str], Peer]) -> None:
    peer = limited_peers("rejoiner")
    room, other = unique_name("room"), unique_name("other")
    replies = [peer.join(room) for _ in range(3)]
    assert [r["ok"] for r in replies] == [True, True, False]
    assert replies[2]["error"] == {
        "code": "rate_limited",
        "message": f"too many join room of {room} requests: the limit is 2 per 1 minute"}
    assert peer.join(other)["ok"]  # the fourth join of all: within the budget for all rooms
    refused = peer.join(unique_name("third"))
    assert refused["ok"] is False and "join rooms" in refused["error"]["message"]


def test_making_rooms_counts_against_the_join_limit(limited_server: ServerProcess) -> None:
    account = register_account(limited_server.url, "maker")
    codes = [account.post("/api/rooms", json={"name": unique_name("room"), "private": True})
             .status_code for _ in range(3)]
    refused = account.post("/api/dm", json={"username": account.username})
    assert codes == [201, 201, 201]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"


def test_signal_over_the_limit_is_refused_for_that_user_only(
    limited_peers: Callable[[str], Peer],
) -> None:
    room = unique_name("room")
    alice, bob, carol = (limited_peers(p) for p in ("alice", "bob", "carol"))
    for peer in (alice, bob, carol):
        assert peer.join(room)["ok"]

    def offer(sender: Peer) -> Any:
        return sender.call("signal", {"room": room, "to": bob.account.key.device_id,
                                      "kind": "offer", "payload": {"sdp": "v=0"}})

    replies = [offer(alice) for _ in range(4)]
    assert [r["ok"] for r in replies] == [True, True, True, False]
    assert replies[3]["error"] == {
        "code": "rate_limited", "message": "too many signal requests: the limit is 3 per 1 minute"}
    assert offer(carol) == {"ok": True}
    bob.wait_for("signal", lambda d: d["from"]["user"] == carol.account.username)
    assert [d["from"]["user"] for d in bob.received("signal")] == (
        [alice.account.username] * 3 + [carol.account.username])


def test_publish_over_the_limit_is_refused_for_that_user_only(
    limited_peers: Callable[[str], Peer],
) -> None:
    room = unique_name("room")
    alice, bob = limited_peers("alice"), limited_peers("bob")
    alice.join(room)
    bob.join(room)
    replies = [alice.call("publish", {"envelope": signed_envelope(alice.account, room, seq)})
               for seq in range(1, 7)]
    assert [r["ok"] for r in replies] == [True] * 5 + [False]
    assert replies[5]["error"]["code"] == "rate_limited"
    assert "publish" in replies[5]["error"]["message"]
    ack = bob.call("publish", {"envelope": signed_envelope(bob.account, room, 1)})
    assert ack["ok"] is True


def test_publish_limit_counts_every_envelope_of_a_batch(
    limited_peers: Callable[[str], Peer],
) -> None:
    room = unique_name("room")
    alice = limited_peers("alice")
    alice.join(room)
    batch = [signed_envelope(alice.account, room, seq) for seq in range(1, 7)]
    reply = alice.call("publish", {"envelopes": batch})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "rate_limited"
    assert alice.call("publish", {"envelopes": batch[:5]})["ok"] is True
