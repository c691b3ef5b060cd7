"""Two server processes, started from the Procfile as a PaaS starts them, sharing PostgreSQL
and Redis: clients on either process see one room, one roster and one log, rate limits count
across both, and when one process dies its clients leave the rosters and move to the other."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.helpers import poll
from tests.peer_agent.agents import AgentProcess, start_agent, wait_connected
from tests.signaling.conftest import (
    PASSWORD,
    Account,
    Peer,
    connect_peer,
    database_engine,
    register_account,
    signed_envelope,
    unique_name,
)
from tests.signaling.deployment import HEARTBEAT_SECONDS, Deployment, deploy
from tests.signaling.services import (
    REDIS_TEST_URL,
    FailoverProxy,
    require_redis,
    temporary_database,
)

LIMITS = {"RATELIMIT_LOGIN": "3 per minute", "RATELIMIT_PUBLISH": "10 per minute"}
OFFER = {"type": "offer", "sdp": "v=0\r\n"}
# A crashed process is presumed dead after 3 missed heartbeats, and the next beat of a
# survivor prunes it: 4 heartbeats, plus time for the event to travel.
PRESENCE_BOUND = 4 * HEARTBEAT_SECONDS + 3.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two processes that every test of this module shares (each uses its own names)."""
    require_redis()
    workdir = tmp_path_factory.mktemp("pair")
    with temporary_database() as database, \
            deploy(workdir, database, REDIS_TEST_URL, extra_env=LIMITS) as deployment:
        yield deployment


def two_in_a_room(pair: Deployment, clients: Callable[[Account, str], Peer],
                  ) -> tuple[str, Peer, Peer]:
    """alice on the first process, bob on the second, both in a fresh room."""
    room = unique_name("room")
    first, second = pair.urls
    alice = clients(register_account(first, "alice"), first)
    bob = clients(register_account(second, "bob"), second)
    assert alice.join(room)["ok"] and bob.join(room)["ok"]
    return room, alice, bob


def device_of(peer: Peer) -> str:
    return peer.account.key.device_id


def test_both_processes_report_the_database_and_redis_healthy(pair: Deployment) -> None:
    for url in pair.urls:
        health = requests.get(url + "/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_roster_on_one_process_lists_a_peer_joined_on_the_other(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room = unique_name("room")
    first, second = pair.urls
    alice = clients(register_account(first, "alice"), first)
    bob = clients(register_account(second, "bob"), second)
    alice.join(room)
    reply = bob.join(room)
    assert [p["device"] for p in reply["peers"]] == [device_of(alice)]


def test_a_join_on_one_process_is_announced_to_peers_on_the_other(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room, alice, bob = two_in_a_room(pair, clients)
    notice = alice.wait_for("peer_joined", lambda d: d["peer"]["device"] == device_of(bob))
    assert notice["room"] == room and notice["peer"]["user"] == bob.account.username


def test_a_peer_leaving_one_process_is_announced_on_the_other(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room, alice, bob = two_in_a_room(pair, clients)
    bob.client.disconnect()
    notice = alice.wait_for("peer_left", lambda d: d["device"] == device_of(bob))
    assert isinstance(notice.pop("epoch"), int)
    assert notice == {"room": room, "device": device_of(bob), "user": bob.account.username}


def test_a_signal_sent_through_one_process_reaches_a_peer_on_the_other(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room, alice, bob = two_in_a_room(pair, clients)
    ack = alice.call("signal", {"room": room, "to": device_of(bob), "kind": "offer",
                                "payload": OFFER})
    assert ack == {"ok": True}
    received = bob.wait_for("signal")
    assert (received["from"]["device"], received["payload"]) == (device_of(alice), OFFER)


def test_an_upload_through_one_process_is_announced_on_the_other(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room, alice, bob = two_in_a_room(pair, clients)
    ack = alice.call("publish", {"envelope": signed_envelope(alice.account, room, 1)})
    stored = bob.wait_for("stored")
    assert stored == {"room": room, "messages": [{"id": ack["id"], "cursor": ack["cursor"]}]}


def test_a_message_published_through_one_process_is_in_the_history_read_through_the_other(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room, alice, bob = two_in_a_room(pair, clients)
    envelope = signed_envelope(alice.account, room, 1, text="across processes")
    assert alice.call("publish", {"envelope": envelope})["ok"]
    reader = dataclasses.replace(bob.account, server_url=pair.urls[1])
    messages = reader.get(f"/api/rooms/{room}/messages").json()["messages"]
    assert [m["text"] for m in messages] == ["across processes"]


def test_sign_in_attempts_on_both_processes_count_against_one_limit(pair: Deployment) -> None:
    first, second = pair.urls
    account = register_account(first, "login")

    def login(url: str, password: str) -> int:
        return requests.post(url + "/api/login", timeout=10,
                             json={"username": account.username, "password": password},
                             ).status_code

    codes = [login(first, "wrong password"), login(second, "wrong password"),
             login(first, "wrong password"), login(second, PASSWORD)]
    assert codes == [401, 401, 401, 429]


def test_uploads_on_both_processes_count_against_one_publish_limit(
    pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room = unique_name("room")
    first, second = pair.urls
    account = register_account(first, "uploader")
    on_first, on_second = clients(account, first), clients(account, second)
    on_first.join(room)
    batch = [signed_envelope(account, room, seq) for seq in range(1, 12)]
    assert on_first.call("publish", {"envelopes": batch[:6]})["ok"] is True
    refused = on_second.call("publish", {"envelopes": batch[6:11]})
    assert refused["ok"] is False and refused["error"]["code"] == "rate_limited"
    assert on_second.call("publish", {"envelopes": batch[6:10]})["ok"] is True


def test_agents_on_two_processes_connect_peer_to_peer_and_chat(
    pair: Deployment, tmp_path: Path,
) -> None:
    room = unique_name("room")
    agents: list[AgentProcess] = []
    try:
        for name, url in zip(("alice", "bob"), pair.urls, strict=True):
            agents.append(start_agent(url, unique_name(name), room, tmp_path / name))
        for agent in agents:
            wait_connected(agent, peers=1, timeout=60)
        alice, bob = agents
        alice.send("hello from the first process")
        poll(lambda: "hello from the first process" in bob.texts(), timeout=20,
             message="alice's message at bob")
    finally:
        for agent in agents:
            agent.stop()


# A process dies: these tests deploy processes of their own, since they kill one.

@pytest.fixture
def doomed_pair(tmp_path: Path) -> Iterator[Deployment]:
    require_redis()
    with temporary_database() as database, \
            deploy(tmp_path / "deployment", database, REDIS_TEST_URL) as deployment:
        yield deployment


def test_presence_of_a_crashed_process_leaves_the_rosters_of_the_other(
    doomed_pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    room, alice, bob = two_in_a_room(doomed_pair, clients)
    doomed_pair.processes[0].crash()
    crashed_at = time.monotonic()
    notice = bob.wait_for("peer_left", lambda d: d["device"] == device_of(alice),
                          timeout=PRESENCE_BOUND + 10)
    waited = time.monotonic() - crashed_at
    assert notice["user"] == alice.account.username
    assert waited < PRESENCE_BOUND, f"presence lingered {waited:.1f} s"
    carol = clients(register_account(doomed_pair.urls[1], "carol"), doomed_pair.urls[1])
    assert [p["device"] for p in carol.join(room)["peers"]] == [device_of(bob)]


def test_a_process_presumed_dead_disconnects_its_clients_so_that_they_join_again(
    doomed_pair: Deployment, clients: Callable[[Account, str], Peer],
) -> None:
    """As when a process was cut off from the database for longer than the stale window and
    another process removed its presence: its clients, unlisted, are sent away to rejoin."""
    room, alice, bob = two_in_a_room(doomed_pair, clients)
    engine = database_engine(doomed_pair.database_url)
    try:
        with engine.begin() as conn:
            server_id = conn.execute(sa.text(
                "SELECT server_id FROM presence WHERE device_id = :device"),
                {"device": device_of(alice)}).scalar_one()
            conn.execute(sa.text("DELETE FROM presence WHERE server_id = :id"), {"id": server_id})
            conn.execute(sa.text("DELETE FROM server_processes WHERE id = :id"),
                         {"id": server_id})
    finally:
        engine.dispose()
    poll(lambda: not alice.client.connected, timeout=10 * HEARTBEAT_SECONDS,
         message="the presumed-dead process to disconnect alice")
    assert bob.client.connected


def test_agents_of_a_crashed_process_reconnect_to_the_survivor_and_chat_on(
    doomed_pair: Deployment, tmp_path: Path,
) -> None:
    first, second = doomed_pair.urls
    # Each agent goes through a router that prefers one process and fails over to the other.
    routers = [FailoverProxy([first, second]), FailoverProxy([second, first])]
    room = unique_name("room")
    agents: list[AgentProcess] = []
    try:
        for name, router in zip(("alice", "bob"), routers, strict=True):
            agents.append(start_agent(router.url, unique_name(name), room, tmp_path / name))
        for agent in agents:
            wait_connected(agent, peers=1, timeout=60)
        alice, bob = agents
        assert set(routers[0].routed) == {0}
        doomed_pair.processes[0].crash()
        poll(lambda: 1 in routers[0].routed and alice.state()["server"]["connected"],
             timeout=60, message="alice to reconnect through the survivor")
        sent = alice.send("after the crash")
        poll(lambda: "after the crash" in bob.texts(), timeout=20, message="message at bob")
        reader = register_account(second, "reader")

        def in_history() -> bool:
            reply = reader.get(f"/api/rooms/{room}/messages", params={"limit": "500"})
            return sent["id"] in {m["id"] for m in reply.json()["messages"]}

        poll(in_history, timeout=30, message="alice's message in the survivor's history")
        watcher = connect_peer(register_account(second, "watcher"))
        try:
            roster = {p["user"] for p in watcher.join(room)["peers"]}
        finally:
            watcher.client.disconnect()
        assert roster == {alice.name, bob.name}
    finally:
        for agent in agents:
            agent.stop()
        for router in routers:
            router.stop()

