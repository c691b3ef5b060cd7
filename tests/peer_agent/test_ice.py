"""ICE pinning: aioice gathers on exactly the pinned addresses and ignores other remote candidates.

These use aioice's Connection directly and never start connectivity checks, so nothing is sent.
"""

from __future__ import annotations

import aioice.ice
import pytest
from aioice import Candidate, Connection

from peer_agent.ice import ice_host_allowed, pin_ice_hosts, pinned_ice_hosts
from tests.peer_agent.signal_bus import run


def _candidate(host: str) -> Candidate:
    return Candidate(foundation="1", component=1, transport="udp", priority=2130706431,
                     host=host, port=9, type="host")


def test_pinned_gathering_offers_exactly_the_pinned_addresses() -> None:
    async def body() -> None:
        connection = Connection(ice_controlling=True)
        try:
            await connection.gather_candidates()
            assert [c.host for c in connection.local_candidates] == ["127.0.0.1"]
            assert [c.type for c in connection.local_candidates] == ["host"]
        finally:
            await connection.close()

    run(body)


def test_remote_candidates_outside_the_pin_are_ignored() -> None:
    async def body() -> None:
        connection = Connection(ice_controlling=True)
        try:
            await connection.add_remote_candidate(_candidate("192.0.2.7"))  # TEST-NET-1
            await connection.add_remote_candidate(_candidate("::1"))
            await connection.add_remote_candidate(_candidate("127.0.0.1"))
            assert [c.host for c in connection.remote_candidates] == ["127.0.0.1"]
        finally:
            await connection.close()

    run(body)


def test_pinning_again_is_idempotent_and_none_restores_aioice() -> None:
    pinned = (aioice.ice.get_host_addresses, aioice.ice.Connection.add_remote_candidate)
    pin_ice_hosts(["127.0.0.1"])
    assert (aioice.ice.get_host_addresses, aioice.ice.Connection.add_remote_candidate) == pinned
    assert pinned_ice_hosts() == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == []

    pin_ice_hosts(None)
    try:
        assert pinned_ice_hosts() is None
        assert ice_host_allowed("192.0.2.7")
        assert aioice.ice.get_host_addresses.__module__ == "aioice.ice"
        assert aioice.ice.Connection.add_remote_candidate.__module__ == "aioice.ice"
    finally:
        pin_ice_hosts(["127.0.0.1"])


def test_pinning_refuses_a_name_that_is_not_an_address() -> None:
    with pytest.raises(ValueError):
        pin_ice_hosts(["localhost"])
    assert pinned_ice_hosts() == ["127.0.0.1"]  # the previous pin still holds
    assert not ice_host_allowed("abcd.local") and ice_host_allowed("127.0.0.1")
