"""Every peer-agent test runs with ICE pinned to 127.0.0.1: no packet may leave loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peer_agent.ice import pin_ice_hosts


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    """Pin ICE gathering and remote candidates to 127.0.0.1, and restore aioice afterwards."""
    pin_ice_hosts(["127.0.0.1"])
    yield
    pin_ice_hosts(None)
