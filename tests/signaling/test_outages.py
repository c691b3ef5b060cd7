"""What the server does when Redis or PostgreSQL goes away and comes back: it keeps serving
what it can, says on /healthz which dependency is down (503), and recovers by itself."""

from __future__ import annotations

import dataclasses
import threading
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
    connect_peer,
    count_stored,
    register_account,
    signed_envelope,
    unique_name,
)
from tests.signaling.deployment import HEARTBEAT_SECONDS, Deployment, deploy
from tests.signaling.services import (
    PrivatePostgres,
    PrivateRedis,
    temporary_database,
    terminate_connections,
)


@dataclasses.dataclass
class RedisPair:
    """Two processes on one PostgreSQL database, sharing a Redis the tests may stop."""

    deployment: Deployment
    redis: PrivateRedis

    @property
    def urls(self) -> list[str]:
        return self.deployment.urls


@pytest.fixture(scope="module")
def redis_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisPair]:
    workdir = tmp_path_factory.mktemp("redis-pair")
    redis = PrivateRedis(workdir / "redis")
    redis.start()
    try:
        with temporary_database() as database, \
                deploy(workdir / "deployment", database, redis.url) as deployment:
            yield RedisPair(deployment, redis)
    finally:
        redis.stop()


@pytest.fixture
def redis_down(redis_pair: RedisPair) -> Iterator[RedisPair]:
    """Redis stopped for the test, started again on the same port afterwards."""
    redis_pair.redis.stop()
    try:
        yield redis_pair
    finally:
        if redis_pair.redis.proc is None:
            redis_pair.redis.start()


def health(url: str) -> tuple[int, dict[str, Any]]:
    reply = requests.get(url + "/healthz", timeout=15)
    return reply.status_code, reply.json()


def published(peer: Peer, room: str, text: str) -> dict[str, Any]:
    reply: dict[str, Any] = peer.call("publish", {"envelope": signed_envelope(
        peer.account, room, 1, text=text)})
    return reply


# Redis

def test_healthz_is_503_naming_redis_while_it_is_down(redis_down: RedisPair) -> None:
    for url in redis_down.urls:
        status, body = health(url)
        assert status == 503
        assert body["down"] == ["redis"]
        assert body["checks"] == {"database": "ok", "redis": "unreachable"}


def test_healthz_is_200_again_once_redis_is_back(redis_down: RedisPair) -> None:
    redis_down.redis.start()
    for url in redis_down.urls:
        poll(lambda url=url: health(url)[0] == 200, timeout=30, interval=0.2,
             message=f"{url} healthy again")


def test_history_is_served_while_redis_is_down(
    redis_pair: RedisPair, clients: Callable[[Account, str], Peer],
) -> None:
    room = unique_name("room")
    author = register_account(redis_pair.urls[0], "author")
    peer = clients(author, redis_pair.urls[0])
    peer.join(room)
    assert published(peer, room, "before the outage")["ok"]
    redis_pair.redis.stop()
    try:
        for url in redis_pair.urls:
            reader = dataclasses.replace(author, server_url=url)
            reply = reader.get(f"/api/rooms/{room}/messages")
            assert reply.status_code == 200, reply.text
            assert [m["text"] for m in reply.json()["messages"]] == ["before the outage"]
    finally:
        redis_pair.redis.start()


def test_uploads_are_stored_and_acknowledged_while_redis_is_down(
    redis_pair: RedisPair, clients: Callable[[Account, str], Peer],
) -> None:
    room = unique_name("room")
    author = register_account(redis_pair.urls[1], "author")
    peer = clients(author, redis_pair.urls[1])
    assert peer.join(room)["ok"]
    redis_pair.redis.stop()
    try:
        ack = published(peer, room, "during the outage")
    finally:
        redis_pair.redis.start()
    assert ack["ok"] is True and ack["duplicate"] is False
    assert count_stored(redis_pair.deployment.database_url, room) == 1


def test_sign_in_works_while_redis_is_down(redis_pair: RedisPair) -> None:
    account = register_account(redis_pair.urls[0], "signer")
    redis_pair.redis.stop()
    try:
        reply = requests.post(redis_pair.urls[1] + "/api/login", timeout=15,
                              json={"username": account.username, "password": PASSWORD})
    finally:
        redis_pair.redis.start()
    assert reply.status_code == 200, reply.text


def test_signals_between_clients_of_one_process_flow_while_redis_is_down(
    redis_pair: RedisPair, clients: Callable[[Account, str], Peer],
) -> None:
    room = unique_name("room")
    url = redis_pair.urls[0]
    alice = clients(register_account(url, "alice"), url)
    bob = clients(register_account(url, "bob"), url)
    assert alice.join(room)["ok"] and bob.join(room)["ok"]
    redis_pair.redis.stop()
    try:
        ack = alice.call("signal", {"room": room, "to": bob.account.key.device_id,
                                    "kind": "offer", "payload": {"sdp": "v=0"}})
        assert ack == {"ok": True}
        assert bob.wait_for("signal")["payload"] == {"sdp": "v=0"}
    finally:
        redis_pair.redis.start()


def test_signals_cross_processes_again_after_redis_returns(
    redis_pair: RedisPair, clients: Callable[[Account, str], Peer],
) -> None:
    room = unique_name("room")
    first, second = redis_pair.urls
    alice = clients(register_account(first, "alice"), first)
    bob = clients(register_account(second, "bob"), second)
    assert alice.join(room)["ok"] and bob.join(room)["ok"]
    redis_pair.redis.stop()
    redis_pair.redis.start()
    sent = 0

    def crossed() -> bool:
        nonlocal sent
        sent += 1
        ack = alice.call("signal", {"room": room, "to": bob.account.key.device_id,
                                    "kind": "offer", "payload": {"n": sent}})
        assert ack == {"ok": True}
        return bool(bob.received("signal"))

    poll(crossed, timeout=30, interval=0.2, message="a signal to cross processes again")


# PostgreSQL connections dropped under a running deployment

def test_uploads_survive_dropped_database_connections_without_loss_or_doubles(
    redis_pair: RedisPair, clients: Callable[[Account, str], Peer],
) -> None:
    """Connections are killed every 50 ms while two clients upload through both processes:
    a request may fail (with an error ack), its retry succeeds, and every message is stored
    exactly once."""
    room = unique_name("room")
    peers = [clients(register_account(url, "uploader"), url) for url in redis_pair.urls]
    for peer in peers:
        assert peer.join(room)["ok"]
    stop = threading.Event()
    killed: list[int] = []

    def keep_killing() -> None:
        while not stop.wait(0.05):
            killed.append(terminate_connections(redis_pair.deployment.database_url))

    killer = threading.Thread(target=keep_killing, daemon=True)
    killer.start()
    failures: list[dict[str, Any]] = []
    acked: dict[str, int] = {}
    try:
        for start in range(1, 61, 5):
            for peer in peers:
                batch = [signed_envelope(peer.account, room, seq)
                         for seq in range(start, start + 5)]
                # Every try may meet a killed connection; on a loaded machine a request
                # outlives several 50 ms kill rounds, so a batch gets many tries.
                for _attempt in range(60):
                    reply = peer.call("publish", {"envelopes": batch}, timeout=30)
                    if reply["ok"] and all(r["ok"] for r in reply["results"]):
                        break
                    failures.append(reply)
                else:
                    raise AssertionError(f"uploads kept failing: {failures[-3:]}")
                for result in reply["results"]:
                    assert acked.setdefault(result["id"], result["cursor"]) == result["cursor"]
    finally:
        stop.set()
        killer.join(timeout=10)
    assert sum(killed) > 0, "no database connection was ever dropped"
    for failure in failures:
        assert set(failure) == {"ok", "error"} and failure["ok"] is False, failure
    assert len(acked) == 120
    assert len(set(acked.values())) == 120
    assert count_stored(redis_pair.deployment.database_url, room) == 120
    reader = dataclasses.replace(peers[0].account, server_url=redis_pair.urls[1])
    listed = reader.get(f"/api/rooms/{room}/messages", params={"limit": "500"}).json()
    assert sorted(m["id"] for m in listed["messages"]) == sorted(acked)


def test_next_requests_succeed_after_database_connections_are_dropped(
    redis_pair: RedisPair,
) -> None:
    reader = register_account(redis_pair.urls[0], "reader")
    room = unique_name("room")
    writer = connect_peer(reader)
    try:
        assert writer.join(room)["ok"]
    finally:
        writer.client.disconnect()
    assert terminate_connections(redis_pair.deployment.database_url) > 0
    for url in redis_pair.urls:
        assert health(url)[0] == 200
        answer = dataclasses.replace(reader, server_url=url).get(f"/api/rooms/{room}/messages")
        assert answer.status_code == 200, answer.text


# PostgreSQL itself down: a private cluster the tests may stop

@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def lone_process(private_postgres: PrivatePostgres, tmp_path: Path) -> Iterator[Deployment]:
    """One web process (no Redis) on the private cluster, its schema made afresh."""
    with deploy(tmp_path, private_postgres.url, None, count=1) as deployment:
        yield deployment
    if private_postgres.proc is None:
        private_postgres.start()


def test_healthz_is_503_naming_the_database_while_it_is_down(
    lone_process: Deployment, private_postgres: PrivatePostgres,
) -> None:
    private_postgres.stop()
    try:
        status, body = health(lone_process.urls[0])
    finally:
        private_postgres.start()
    assert status == 503
    assert body["down"] == ["database"] and body["checks"] == {"database": "unreachable"}


def test_api_requests_fail_with_a_json_error_while_the_database_is_down(
    lone_process: Deployment, private_postgres: PrivatePostgres,
) -> None:
    account = register_account(lone_process.urls[0], "patient")
    private_postgres.stop()
    try:
        reply = account.get("/api/me")
    finally:
        private_postgres.start()
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal"


def test_process_serves_again_by_itself_once_the_database_is_back(
    lone_process: Deployment, private_postgres: PrivatePostgres,
) -> None:
    url = lone_process.urls[0]
    private_postgres.stop()
    poll(lambda: health(url)[0] == 503, timeout=30, message="the outage to show")
    private_postgres.start()
    poll(lambda: health(url)[0] == 200, timeout=30, interval=0.2, message="healthy again")
    account = register_account(url, "after")
    assert account.get("/api/me").status_code == 200


def test_presence_left_while_the_database_was_down_is_pruned_once_it_returns(
    lone_process: Deployment, private_postgres: PrivatePostgres,
) -> None:
    """A client that disconnects while the database is down cannot be taken out of the roster
    then; the process's heartbeat takes it out once the database is back."""
    url = lone_process.urls[0]
    room = unique_name("room")
    alice = connect_peer(register_account(url, "alice"))
    bob = connect_peer(register_account(url, "bob"))
    try:
        assert alice.join(room)["ok"] and bob.join(room)["ok"]
        private_postgres.stop()
        try:
            bob.client.disconnect()
        finally:
            private_postgres.start()
        notice = alice.wait_for("peer_left", timeout=10 * HEARTBEAT_SECONDS + 20)
        assert notice["device"] == bob.account.key.device_id
        carol = connect_peer(register_account(url, "carol"))
        try:
            peers = carol.join(room)["peers"]
        finally:
            carol.client.disconnect()
        assert [p["device"] for p in peers] == [alice.account.key.device_id]
    finally:
        alice.client.disconnect()
