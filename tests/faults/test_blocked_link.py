"""Delivery that needs no particular link (issue 15): two agents that a firewall keeps from
linking to each other still get every message of each other, exactly once and in the same
order: through the server while it is up, through a third peer linked to both while it is
down; and each message's path says which way it came."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.routed_network import Host, RoutedNetwork, unavailable_reason
from tests.faults.routed_room import HostedAgent, HubServer, start_hosted_agent, wait_state
from tests.helpers import poll, require
from tests.signaling.conftest import unique_name

StartAgent = Callable[[str, Host], HostedAgent]


@pytest.fixture
def network() -> Iterator[RoutedNetwork]:
    reason = unavailable_reason()
    require(reason, "needs a routed network of namespaces")
    made = RoutedNetwork()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def server(network: RoutedNetwork, tmp_path: Path) -> Iterator[HubServer]:
    running = HubServer(tmp_path / "server")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def start(server: HubServer, tmp_path: Path) -> Iterator[StartAgent]:
    """Start agents in one fresh room, each on the host given; all stopped at the end."""
    room = unique_name("room")
    started: list[HostedAgent] = []

    def make(prefix: str, host: Host) -> HostedAgent:
        agent = start_hosted_agent(host, server, unique_name(prefix), room, tmp_path / prefix)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.stop()


def texts_of(agent: HostedAgent) -> list[str]:
    return [m["text"] for m in agent.messages()]


def received_step(agent: HostedAgent, message_id: str) -> dict[str, object]:
    return next(s for s in agent.path(message_id) if s["what"] == "received")


def wait_holding(agents: list[HostedAgent], wanted: set[str]) -> None:
    for agent in agents:
        poll(lambda: set(texts_of(agent)) == wanted, timeout=30,  # noqa: B023 (polled now)
             message=f"every message at {agent.name}")


def assert_same_log(agents: list[HostedAgent], wanted: set[str]) -> None:
    """Every agent holds exactly the wanted messages, each once, in one order."""
    logs = [agent.messages() for agent in agents]
    for agent, log in zip(agents, logs, strict=True):
        texts = [m["text"] for m in log]
        assert sorted(texts) == sorted(wanted), f"{agent.name} holds {texts}"
        assert len({m["id"] for m in log}) == len(log), f"{agent.name} holds a message twice"
    orders = [[m["id"] for m in log] for log in logs]
    assert all(order == orders[0] for order in orders), orders


def test_peers_a_firewall_keeps_apart_get_each_others_messages_through_the_server(
    network: RoutedNetwork, start: StartAgent,
) -> None:
    bob_host, carol_host = network.add_host(), network.add_host()
    network.block(bob_host, carol_host)
    bob, carol = start("bob", bob_host), start("carol", carol_host)
    wait_state(bob, server_up=True, linked=set(), listed={carol.name})
    wait_state(carol, server_up=True, linked=set(), listed={bob.name})
    sent = []
    for n in range(3):
        sent.append(bob.send(f"bob {n}"))
        sent.append(carol.send(f"carol {n}"))
    wanted = {m["text"] for m in sent}
    wait_holding([bob, carol], wanted)
    assert_same_log([bob, carol], wanted)
    for message in sent:
        receiver = carol if message["author"] == bob.name else bob
        step = received_step(receiver, message["id"])
        assert step["via"] == "server", step
        assert "via the server" in str(step["text"])
    # The firewall held: the two never linked, and it dropped their attempts.
    assert bob.link_state(carol.name) != "connected"
    assert network.dropped() > 0


def test_peers_a_firewall_keeps_apart_get_each_others_messages_through_a_third_peer(
    network: RoutedNetwork, server: HubServer, start: StartAgent,
) -> None:
    alice_host, bob_host, carol_host = network.add_host(), network.add_host(), network.add_host()
    network.block(bob_host, carol_host)
    alice = start("alice", alice_host)
    bob, carol = start("bob", bob_host), start("carol", carol_host)
    wait_state(alice, server_up=True, linked={bob.name, carol.name}, listed=set())
    wait_state(bob, server_up=True, linked={alice.name}, listed={carol.name})
    wait_state(carol, server_up=True, linked={alice.name}, listed={bob.name})
    server.stop()
    for agent in (alice, bob, carol):
        wait_state(agent, server_up=False, linked=set(), listed=set())
    sent = []
    for n in range(3):
        sent.append(bob.send(f"bob {n}"))
        sent.append(carol.send(f"carol {n}"))
    sent.append(alice.send("alice, linked to both"))
    wanted = {m["text"] for m in sent}
    wait_holding([alice, bob, carol], wanted)
    assert_same_log([alice, bob, carol], wanted)
    for message in sent:
        if message["author"] == alice.name:
            continue
        receiver = carol if message["author"] == bob.name else bob
        step = received_step(receiver, message["id"])
        assert (step["via"], step["user"]) == ("sync", alice.name), step
        assert f"via {alice.name}" in str(step["text"])
    assert bob.link_state(carol.name) != "connected"
    assert network.dropped() > 0
