"""Fixtures for the fault tests: a restartable server and agents in one fresh room, every
process stopped by pid at the end, ICE pinned to loopback in this process too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peer_agent.ice import pin_ice_hosts
from tests.faults.cluster import RoomAgents, Server
from tests.signaling.conftest import unique_name


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    pin_ice_hosts(["127.0.0.1"])
    yield
    pin_ice_hosts(None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "server")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def room() -> str:
    return unique_name("room")


@pytest.fixture
def agents(tmp_path: Path, server: Server, room: str) -> Iterator[RoomAgents]:
    """Make and start agents in the room (`agents("alice")`, `agents.several(...)`); all are
    stopped at the end."""
    made = RoomAgents(tmp_path, server, room)
    yield made
    made.stop()
