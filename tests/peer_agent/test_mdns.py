"""`.local` (mDNS) candidates: aioice, under the agent, resolves them by multicast where the
network carries mDNS. Shown in a sealed namespace (a veth carries multicast, loopback does
not): one aioice publishes a name, another resolves it. Why browsers' names still do not
resolve here is in docs/browser-peer.md ("mDNS candidates")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aioice import ice, mdns

from tests.browser.sealed_network import NAMESPACE_ADDRESS, SealedNetwork, unavailable_reason
from tests.helpers import require


@pytest.fixture
def own_network() -> Iterator[SealedNetwork]:
    reason = unavailable_reason()
    require(reason, "mDNS needs a namespace of its own")
    network = SealedNetwork()
    try:
        yield network
    finally:
        network.leave()


def test_aioice_resolves_a_local_name_another_peer_publishes(own_network: SealedNetwork) -> None:
    name = mdns.create_mdns_hostname()
    published = threading.Event()
    done = threading.Event()
    results: list[str | None] = []

    async def publisher() -> None:
        protocol = await ice.get_or_create_mdns_protocol(object())
        try:
            await protocol.publish(name, NAMESPACE_ADDRESS)
            published.set()
            await asyncio.get_running_loop().run_in_executor(None, done.wait, 10)
        finally:
            await protocol.close()

    async def resolver() -> None:
        protocol = await ice.get_or_create_mdns_protocol(object())
        try:
            results.append(await protocol.resolve(name, timeout=3.0))
        finally:
            await protocol.close()

    # aioice keeps one mDNS socket per thread: each side gets a thread (born in the namespace).
    thread = threading.Thread(target=lambda: asyncio.run(publisher()))
    thread.start()
    try:
        assert published.wait(10)
        resolving = threading.Thread(target=lambda: asyncio.run(resolver()))
        resolving.start()
        resolving.join(15)
    finally:
        done.set()
        thread.join(15)
    assert results == [NAMESPACE_ADDRESS]
