"""One Socket.IO connection per device, whatever rooms it is in: the server sees one sid in
every room's presence, leaving a room keeps the others on that connection, and a server killed
and started again finds every room joined again and every room's uploads resumed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from launcher import LOOPBACK_RECONNECT_MAX, AgentProcess
from tests.helpers import poll
from tests.signaling.conftest import ServerProcess, unique_name

PASSWORD = "password-" + "x" * 8


def start(server: ServerProcess, base: Path, name: str, rooms: list[str],
          agents: list[AgentProcess]) -> AgentProcess:
    agent = AgentProcess(server.url, unique_name(name), rooms[0], base / name, PASSWORD,
                         name=name, rooms=rooms[1:], reconnect_max=LOOPBACK_RECONNECT_MAX)
    agents.append(agent)
    agent.start()
    return agent


def _query(server: ServerProcess, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows from the server's SQLite file, read straight from the file."""
    path = server.database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return list(db.execute(sql, args).fetchall())


def presence(server: ServerProcess, device: str) -> dict[str, str]:
    """The rooms the server lists `device` in, each with the sid of its connection."""
    rows = _query(server, "SELECT rooms.name, presence.sid FROM presence JOIN rooms ON "
                  "rooms.id = presence.room_id WHERE presence.device_id = ?", device)
    return {str(room): str(sid) for room, sid in rows}


def stored_texts(server: ServerProcess, room: str) -> set[str]:
    rows = _query(server, "SELECT messages.text FROM messages JOIN rooms ON rooms.id = "
                  "messages.room_id WHERE rooms.name = ?", room)
    return {str(text) for (text,) in rows}


def test_a_device_in_three_rooms_holds_one_connection_and_leaving_one_keeps_the_others(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    rooms = [unique_name(r) for r in ("red", "green", "blue")]
    alice = start(server, tmp_path, "alice", rooms, agents)
    bob = start(server, tmp_path, "bob", rooms, agents)
    for agent in (alice, bob):
        poll(lambda agent=agent: set(presence(server, agent.device)) == set(rooms), timeout=30,
             message=f"{agent.name} present in every room")
        sids = set(presence(server, agent.device).values())
        assert len(sids) == 1, f"{agent.name} has {len(sids)} connections: {sids}"
    [alice_sid] = set(presence(server, alice.device).values())

    alice.leave(rooms[1])
    poll(lambda: set(presence(server, alice.device)) == {rooms[0], rooms[2]}, timeout=15,
         message="alice out of the room she left, in the others")
    assert set(presence(server, alice.device).values()) == {alice_sid}
    # Signals and uploads go on in the rooms she kept, over the same connection.
    for room in (rooms[0], rooms[2]):
        text = f"still here in {room}"
        alice.send(text, room=room)
        poll(lambda room=room, text=text: text in stored_texts(server, room), timeout=15,
             message=f"alice's message uploaded in {room}")
        poll(lambda room=room, text=text: text in bob.texts(room), timeout=15,
             message=f"bob has alice's message in {room}")
    assert set(presence(server, bob.device)) == set(rooms)
    assert alice.state(rooms[0])["server"]["connected"]


def test_a_restarted_server_finds_every_room_joined_again_and_every_upload_resumes(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    rooms = [unique_name(r) for r in ("one", "two", "three")]
    alice = start(server, tmp_path, "alice", rooms, agents)
    poll(lambda: set(presence(server, alice.device)) == set(rooms), timeout=30,
         message="alice present in every room")
    server.kill()
    for room in rooms:
        poll(lambda room=room: not alice.state(room)["server"]["connected"], timeout=30,
             message=f"alice sees the server gone in {room}")
    sent = {room: f"said in {room} while the server was down" for room in rooms}
    for room, text in sent.items():
        alice.send(text, room=room)
        poll(lambda room=room: alice.state(room)["server"]["outbox"] == 1, timeout=10,
             message=f"alice's message in {room} waits for the server")
    server.start()
    poll(lambda: set(presence(server, alice.device)) == set(rooms), timeout=30,
         message="alice back in every room")
    assert len(set(presence(server, alice.device).values())) == 1
    for room, text in sent.items():
        poll(lambda room=room, text=text: text in stored_texts(server, room), timeout=30,
             message=f"the upload in {room} resumed")
        poll(lambda room=room: alice.state(room)["server"]["outbox"] == 0, timeout=15,
             message=f"alice's outbox in {room} empty")
