"""The agents' side of the mesh race (issue 17): four agents that share no room join one new
room at the same instant, over and over; every try ends in the full mesh, whatever order the
join replies, `peer_joined` and the offers arrive in, and leaving the room closes every link
(the next try links afresh); four agents started at once link too. `python -m bench.agent_race`
runs fifty tries and times them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.agent_race import PASSWORD, SERVER_ENV, race, start_agents, unique
from launcher import AgentProcess, ServerProcess, start_all, stop_all
from launcher.agent import LOOPBACK_RECONNECT_MAX
from tests.helpers import poll

TRIES = 6
STALL_S = 8.0  # a prompt retry of a lost offer, not the 10 s link time-out, must save a try


@pytest.fixture(scope="module")
def racers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProcess]]:
    base = tmp_path_factory.mktemp("race")
    server = ServerProcess(base / "server", env=SERVER_ENV)
    server.start()
    agents: list[AgentProcess] = []
    try:
        agents = start_agents(server, base, 4)
        yield agents
    finally:
        stop_all([*agents, server])


def test_agents_joining_a_room_at_once_always_form_the_full_mesh(
        racers: list[AgentProcess]) -> None:
    tries = race(racers, TRIES, stall_s=STALL_S)
    stalls = [(n, t.shown) for n, t in enumerate(tries) if t.mesh_ms is None]
    assert not stalls, f"no full mesh within {STALL_S} s: {stalls}"
    # Each try raced fresh links: race() waited for every link to close after the leaves.
    assert all(not a.device_links() for a in racers)
    assert all(len(a.room_list()) == 1 for a in racers)  # each back to its own room only


def test_agents_started_at_once_form_the_full_mesh(tmp_path: Path) -> None:
    """The same race from the agents' start: four processes launched at once, each joining
    the room as it signs in."""
    server = ServerProcess(tmp_path / "server", env=SERVER_ENV)
    server.start()
    room = unique("race")
    agents = [AgentProcess(server.url, unique(f"starter{i}"), room, tmp_path / f"starter{i}",
                           PASSWORD, reconnect_max=LOOPBACK_RECONNECT_MAX) for i in range(4)]
    try:
        start_all(agents)
        poll(lambda: all(len([p for p in a.state(room)["peers"] if p["state"] == "connected"])
                         == 3 for a in agents),
             timeout=STALL_S, message="the full mesh of agents started at once")
    finally:
        stop_all([*agents, server])
