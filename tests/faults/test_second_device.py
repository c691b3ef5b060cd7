"""A user signs in on a second device, with a fresh data dir: it receives the room's whole
history from the server, or from the peers when the server is down."""

from __future__ import annotations

from pathlib import Path

from launcher import start_all
from tests.faults.cluster import Agent, Reader, RoomAgents, Server, wait_joined, wait_mesh
from tests.helpers import poll


def test_a_second_device_gets_the_whole_history_from_the_server(
        server: Server, agents: RoomAgents, tmp_path: Path, room: str) -> None:
    laptop, bob = agents.several("alice", "bob")
    wait_mesh([laptop, bob])
    for i in range(60):
        (laptop if i % 2 else bob).send(f"history {i}")
    laptop_device = laptop.state()["device"]
    for agent in (laptop, bob):
        poll(lambda agent=agent: agent.state()["server"]["outbox"] == 0, timeout=30,
             message=f"{agent.name}'s uploads")
        agent.stop()  # only the server holds the history now
    phone = Agent(laptop.name, tmp_path / "alice-phone", server, room)
    try:
        phone.start()
        server_log = Reader(server, room, bob.name).log_keys()
        poll(lambda: phone.log_keys() == server_log, timeout=60,
             message="the phone holds the server's log")
        assert phone.state()["device"] != laptop_device
        assert phone.state()["user"] == laptop.name
    finally:
        phone.stop()


def test_a_second_device_gets_the_history_from_peers_while_the_server_is_down(
        tmp_path: Path, room: str) -> None:
    """The server is made to lack the history (its publish limit refuses every upload), the
    phone signs in and joins, then the server is killed: all the phone gets comes from peers."""
    server = Server(tmp_path / "server", {"RATELIMIT_PUBLISH": "1 per hour"})
    server.start()
    made: list[Agent] = []
    try:
        laptop = Agent("alice-" + room[-8:], tmp_path / "alice", server, room)
        bob = Agent("bob-" + room[-8:], tmp_path / "bob", server, room)
        made += [laptop, bob]
        start_all([laptop, bob])
        wait_mesh([laptop, bob])
        said = [(laptop if i % 2 else bob).send(f"history {i}")["id"] for i in range(40)]
        poll(lambda: len(bob.log_keys()) == 40, timeout=30, message="bob holds it all")
        # At most one upload per user got through the limit.
        assert len(Reader(server, room, bob.name).log_keys()) <= 2
        phone = Agent(laptop.name, tmp_path / "alice-phone", server, room)
        made.append(phone)
        phone.start()
        wait_joined([phone])
        server.kill()
        poll(lambda: not phone.state()["server"]["connected"], timeout=30,
             message="the phone sees the server gone")
        poll(lambda: set(said) <= {m["id"] for m in phone.messages()}, timeout=60,
             message="the phone's history from peers")
        assert phone.log_keys() == laptop.log_keys() == bob.log_keys()
        assert not server.up
    finally:
        for agent in made:
            agent.stop()
        server.stop()
