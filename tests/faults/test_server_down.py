"""The server is killed (-9) while the peers chat: the chat carries on peer to peer, each UI
shows the server unreachable and counts what waits for it, and when the server is back every
outbox flushes and the server's log equals the peers' logs, nothing lost or doubled."""

from __future__ import annotations

import contextlib
import sqlite3

from tests.faults.checker import check
from tests.faults.cluster import Agent, Reader, RoomAgents, Server, wait_joined, wait_mesh
from tests.helpers import poll


def server_gone(agents: list[Agent]) -> None:
    for agent in agents:
        poll(lambda agent=agent: not agent.state()["server"]["connected"], timeout=30,
             message=f"{agent.name} shows the server unreachable")


def stored_rows(server: Server, room: str) -> int:
    """Rows of the room in the server's SQLite file, read straight from the file."""
    with contextlib.closing(sqlite3.connect(server.database, timeout=10)) as db:
        row = db.execute("SELECT count(*) FROM messages JOIN rooms ON rooms.id = "
                         "messages.room_id WHERE rooms.name = ?", (room,)).fetchone()
    return int(row[0])


def test_chat_carries_on_and_each_ui_counts_what_waits_for_the_server(
        server: Server, agents: RoomAgents) -> None:
    trio = agents.several("alice", "bob", "carol")
    alice, bob, carol = trio
    wait_mesh(trio)
    wait_joined(trio)
    assert all(a.state()["server"]["outbox"] == 0 for a in trio)
    server.kill()
    server_gone(trio)
    alice.send("one while the server is down")
    alice.send("two while the server is down")
    bob.send("three while the server is down")
    for agent in trio:
        poll(lambda agent=agent: len(agent.texts()) == 3, timeout=30,
             message=f"{agent.name} has all three")
        # Each holds the three and the server none: each would upload all three.
        poll(lambda agent=agent: agent.state()["server"]["outbox"] == 3, timeout=10,
             message=f"{agent.name} counts three waiting")
        state = agent.state()
        assert state["server"]["connected"] is False
        assert state["server"]["state"] == "down"
        assert [p["state"] for p in state["peers"]] == ["connected", "connected"]
    mine = [m for m in alice.messages() if m["mine"]]
    assert all(m["delivery"]["server"] is False for m in mine)


def test_when_the_server_returns_every_outbox_flushes_and_its_log_equals_the_peers(
        server: Server, agents: RoomAgents, room: str) -> None:
    trio = agents.several("alice", "bob", "carol")
    wait_mesh(trio)
    acked = [trio[0].send("before the crash")["id"]]
    server.kill()
    server_gone(trio)
    for i in range(30):
        acked.append(trio[i % 3].send(f"while the server is down {i}")["id"])
    server.start()
    wait_joined(trio, timeout=90)
    for agent in trio:
        poll(lambda agent=agent: agent.state()["server"]["outbox"] == 0, timeout=60,
             message=f"{agent.name}'s outbox flushed")
        assert agent.state()["server"]["state"] == "connected"
    reader = Reader(server, room, trio[0].name)
    logs = {agent.name: agent.log_keys() for agent in trio}
    poll(lambda: len(reader.log_keys()) == len(acked), timeout=30, message="the server's log")
    logs["server"] = reader.log_keys()
    counts = check(acked, logs)
    assert counts.ok(), counts.line()
    assert all(m["delivery"]["server"] for m in trio[0].messages() if m["mine"])


def test_messages_of_an_author_who_died_reach_the_server_through_a_peer(
        server: Server, agents: RoomAgents, room: str) -> None:
    alice, bob = agents.several("alice", "bob")
    wait_mesh([alice, bob])
    server.kill()
    server_gone([alice, bob])
    ids = {alice.send(f"alice's last words {i}")["id"] for i in range(3)}
    poll(lambda: ids <= {m["id"] for m in bob.messages()}, timeout=30, message="bob holds them")
    alice.kill()
    server.start()
    reader = Reader(server, room, bob.name)
    poll(lambda: ids <= {m["id"] for m in reader.messages()}, timeout=60,
         message="alice's messages on the server, uploaded by bob")
    poll(lambda: bob.state()["server"]["outbox"] == 0, timeout=30, message="bob's outbox")


def test_a_crash_mid_upload_leaves_the_database_intact_and_the_retry_neither_loses_nor_doubles(
        server: Server, agents: RoomAgents, room: str) -> None:
    alice, bob = agents.several("alice", "bob")
    wait_mesh([alice, bob])
    server.kill()
    server_gone([alice, bob])
    total = 400
    acked = [(alice if i % 2 else bob).send(f"queued {i}")["id"] for i in range(total)]
    partial: list[int] = []
    for _ in range(5):
        server.start()
        # Kill it again as soon as the uploads have begun to land.
        seen = poll(lambda: stored_rows(server, room), timeout=60, interval=0.005,
                    message="the first uploads stored")
        server.kill()
        with contextlib.closing(sqlite3.connect(server.database)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if seen < total:
            partial.append(seen)
            break
    assert partial, "no kill landed before the uploads were complete"
    server.start()
    for agent in (alice, bob):
        poll(lambda agent=agent: agent.state()["server"]["outbox"] == 0, timeout=90,
             message=f"{agent.name}'s outbox flushed after the crash")
    assert stored_rows(server, room) == total
    reader = Reader(server, room, alice.name)
    counts = check(acked, {"alice": alice.log_keys(), "bob": bob.log_keys(),
                           "server": reader.log_keys()})
    assert counts.ok(), counts.line()
