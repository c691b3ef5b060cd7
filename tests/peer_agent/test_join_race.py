"""Agents joining one room at the same time always form the full mesh, without waiting out a
connect time-out: a peer_joined or an offer that comes while an agent's join runs is kept
when the join reply arrives (protocol/roster.py, kept_on_join)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import stop_process
from tests.peer_agent.agents import AgentProcess, start_agent, wait_connected
from tests.signaling.conftest import ServerProcess, start_server, unique_name

AGENTS = 4
TRIES = 2
# Far below the 10 s connect time-out after which a lost pair used to be offered again.
MESH_DEADLINE_S = 8.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = start_server(tmp_path / "server")
    yield running
    stop_process(running.proc)


@pytest.mark.parametrize("attempt", range(TRIES))
def test_agents_joining_at_once_form_the_full_mesh(
        server: ServerProcess, tmp_path: Path, attempt: int) -> None:
    room = unique_name("race")
    names = [unique_name(f"agent{i}") for i in range(AGENTS)]
    with ThreadPoolExecutor(AGENTS) as pool:
        agents: list[AgentProcess] = list(pool.map(
            lambda name: start_agent(server.url, name, room, tmp_path / name), names))
    try:
        started = time.monotonic()
        for agent in agents:
            left = MESH_DEADLINE_S - (time.monotonic() - started)
            wait_connected(agent, AGENTS - 1, timeout=max(0.1, left))
    finally:
        for agent in agents:
            agent.stop()
