"""Every peer-agent test runs with ICE pinned to 127.0.0.1: no packet may leave loopback. The
`trio` fixture gives a module three linked agents on a server of its own; `server` gives a test
a server of its own (sign-in limits open), and `agents` stops every agent a test started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.server import OPEN_LIMITS
from peer_agent.ice import pin_ice_hosts
from tests.peer_agent.agents import AgentProcess, start_agents, wait_connected
from tests.signaling.conftest import ServerProcess, start_server, unique_name


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    """Pin ICE gathering and remote candidates to 127.0.0.1, and restore aioice afterwards."""
    pin_ice_hosts(["127.0.0.1"])
    yield
    pin_ice_hosts(None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, with the sign-in limits open."""
    running = start_server(tmp_path / "server", OPEN_LIMITS)
    yield running
    running.stop()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """The agents a test starts, appended here, each stopped (by pid) at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.fixture(scope="module")
def room_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server for the module's tests."""
    running = start_server(tmp_path_factory.mktemp("agent-server"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def trio(room_server: ServerProcess,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProcess]]:
    """alice, bob and carol in a fresh room of the module's server, fully linked."""
    room = unique_name("room")
    base: Path = tmp_path_factory.mktemp("agents")
    agents: list[AgentProcess] = []
    try:
        agents += start_agents(room_server.url, [unique_name(n) for n in ("alice", "bob", "carol")],
                               room, base)
        for agent in agents:
            wait_connected(agent, peers=2)
        yield agents
    finally:
        for agent in agents:
            agent.stop()
