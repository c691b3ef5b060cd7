"""A peer dies, freezes, or loses only its server connection: the others see it go and carry
on, and it catches up when it is back."""

from __future__ import annotations

from pathlib import Path

from launcher import start_all
from tests.faults.cluster import Agent, RoomAgents, Server, holds, wait_joined, wait_mesh
from tests.faults.proxy import TcpProxy
from tests.helpers import poll
from tests.signaling.conftest import unique_name


def link_state(agent: Agent, other: Agent) -> str | None:
    peer = next((p for p in agent.state()["peers"] if p["user"] == other.name), None)
    return None if peer is None else str(peer["state"])


def offline(agent: Agent) -> set[str]:
    return {p["user"] for p in agent.state()["offline"]}


def test_a_killed_peer_is_shown_offline_and_the_others_carry_on(
        server: Server, agents: RoomAgents) -> None:
    trio = agents.several("alice", "bob", "carol")
    alice, bob, carol = trio
    wait_mesh(trio)
    carol.kill()
    for agent in (alice, bob):
        poll(lambda agent=agent: carol.name in offline(agent), timeout=30,
             message=f"{agent.name} sees carol offline")
        assert link_state(agent, carol) is None
    alice.send("carol is gone")
    poll(lambda: "carol is gone" in bob.texts(), timeout=20, message="bob hears alice")
    assert link_state(alice, bob) == "connected"


def test_a_restarted_peer_catches_up_from_the_server(
        server: Server, agents: RoomAgents) -> None:
    alice, bob = agents.several("alice", "bob")
    wait_mesh([alice, bob])
    bob.kill()
    said = [alice.send(f"while bob was dead {i}")["id"] for i in range(20)]
    poll(lambda: alice.state()["server"]["outbox"] == 0, timeout=30, message="alice's uploads")
    alice.stop()  # only the server holds what bob missed
    bob.start()
    poll(lambda: set(said) <= {m["id"] for m in bob.messages()}, timeout=60,
         message="bob's catch-up from the server")


def test_a_frozen_peer_is_timed_out_and_resyncs_when_it_wakes(
        server: Server, agents: RoomAgents) -> None:
    trio = agents.several("alice", "bob", "carol")
    alice, bob, carol = trio
    wait_mesh(trio)
    carol.freeze()
    for agent in (alice, bob):
        poll(lambda agent=agent: link_state(agent, carol) != "connected", timeout=30,
             message=f"{agent.name} times carol out")
    said = {alice.send("while carol slept")["id"], bob.send("so did we all")["id"]}
    poll(lambda: said <= {m["id"] for m in bob.messages()}, timeout=20, message="bob has both")
    carol.thaw()
    wait_mesh(trio, timeout=90)
    poll(lambda: said <= {m["id"] for m in carol.messages()}, timeout=60,
         message="carol resyncs")
    assert [m["id"] for m in carol.messages()] == [m["id"] for m in alice.messages()]


def test_a_peer_cut_off_from_the_server_keeps_its_data_channels(
        server: Server, tmp_path: Path, room: str) -> None:
    """The server says bob left, but bob's data channel to alice is healthy: it stays."""
    proxy = TcpProxy(server.port)
    proxy.start()
    alice = Agent(unique_name("alice"), tmp_path / "alice", server, room)
    bob = Agent(unique_name("bob"), tmp_path / "bob", server, room, server_url=proxy.url)
    try:
        start_all([alice, bob])
        wait_mesh([alice, bob])
        wait_joined([alice, bob])
        proxy.cut()
        poll(lambda: not bob.state()["server"]["connected"], timeout=30,
             message="bob loses the server")
        poll(lambda: alice.state()["peers"][0]["on_server"] is False, timeout=30,
             message="the server tells alice that bob left")
        # Longer than the pings' timeout (6 s): the link is judged by its pings alone.
        holds(lambda: link_state(alice, bob) == "connected", duration=8,
              message="alice's link to bob")
        bob.send("still here")
        poll(lambda: "still here" in alice.texts(), timeout=20, message="alice hears bob")
        proxy.mend()
        poll(lambda: alice.state()["peers"][0]["on_server"] is True, timeout=60,
             message="bob back on the server")
        poll(lambda: bob.state()["server"]["outbox"] == 0, timeout=30, message="bob's upload")
    finally:
        for agent in (alice, bob):
            agent.stop()
        proxy.close()
