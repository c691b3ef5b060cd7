"""Links that recover: real aiortc peers over 127.0.0.1 inside a network namespace of the
test's own, where iptables can cut their traffic and let it through again.

A link whose pongs stop is `disconnected` and kept: when traffic flows again the same
connection carries on, with no new offer. Cut for longer than the grace, it has `failed` and
the offering side offers fresh connections with backoff until one opens."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from peer_agent.mesh import LinkState
from tests.browser.sealed_network import SealedNetwork, unavailable_reason
from tests.helpers import require
from tests.peer_agent.signal_bus import Room, run, sorted_keys, wait_until

DROP_UDP = ["INPUT", "-p", "udp", "-j", "DROP"]


@pytest.fixture
def own_network() -> Iterator[SealedNetwork]:
    """The test's thread in a fresh network namespace (its loopback and iptables its own)."""
    reason = unavailable_reason() or (
        None if shutil.which("iptables") else "`iptables` is not installed")
    require(reason, "cutting traffic needs a namespace of its own and iptables")
    network = SealedNetwork()
    try:
        yield network
    finally:
        network.leave()


def cut(on: bool) -> None:
    """Drop (or let through again) every UDP packet in the namespace: ICE, DTLS and SCTP."""
    subprocess.run(["iptables", "-I" if on else "-D", *DROP_UDP], check=True, timeout=30)


def test_a_link_cut_briefly_is_disconnected_then_recovers_on_the_same_connection(
        own_network: SealedNetwork) -> None:
    async def body() -> None:
        async with Room(ping_interval=0.2, ping_timeout=1.0, recover_grace=8.0) as room:
            first, second = sorted_keys(2)
            alice, bob = room.join("alice", first), room.join("bob", second)
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")
            offers, attempts = room.bus.count("offer"), alice.mesh.links[bob.device].attempts

            cut(True)
            try:
                await wait_until(lambda: alice.state_of(bob) is LinkState.DISCONNECTED
                                 and bob.state_of(alice) is LinkState.DISCONNECTED,
                                 timeout=5, message="both ends disconnected")
                assert not alice.mesh.send(bob.device, "lost?"), "only pings go on a stall"
            finally:
                cut(False)
            await wait_until(room.fully_connected, timeout=8, message="recovered")
            assert room.bus.count("offer") == offers
            assert alice.mesh.links[bob.device].attempts == attempts
            assert not alice.saw(bob, LinkState.FAILED) and not bob.saw(alice, LinkState.FAILED)
            assert alice.mesh.send(bob.device, "after the cut")
            await wait_until(lambda: bob.texts_from(alice) == ["after the cut"],
                             message="a frame on the same connection")

    run(body, timeout=30)


def test_a_link_cut_past_the_grace_fails_and_is_offered_afresh_until_it_opens(
        own_network: SealedNetwork) -> None:
    async def body() -> None:
        async with Room(ping_interval=0.2, ping_timeout=0.5, recover_grace=0.5,
                        connect_timeout=1.0, retry_base=0.2, retry_max=0.4) as room:
            first, second = sorted_keys(2)
            alice, bob = room.join("alice", first), room.join("bob", second)
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")
            offers = room.bus.count("offer")

            cut(True)
            try:
                await wait_until(lambda: alice.saw(bob, LinkState.FAILED), timeout=5,
                                 message="the link failed")
                # While cut, each fresh offer times out and the next follows after a backoff.
                await wait_until(lambda: room.bus.count("offer") >= offers + 2, timeout=8,
                                 message="fresh offers retried")
                assert not room.fully_connected()
            finally:
                cut(False)
            await wait_until(room.fully_connected, timeout=10, message="a fresh link")
            assert alice.mesh.send(bob.device, "on the new connection")
            await wait_until(lambda: bob.texts_from(alice) == ["on the new connection"],
                             message="a frame on the new connection")

    run(body, timeout=40)
