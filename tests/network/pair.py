"""Two aiortc peers in one process whose sockets live in two namespaces of a `NatLab`, so that
their packets really cross the lab's router (and TURN server), while one clock times both ends.

Linux keeps the network namespace per thread and a socket stays in the namespace it was made
in; aiortc makes every socket of a peer connection while gathering (host sockets, the TURN
allocation) inside `setLocalDescription`. So the one event-loop thread steps into a peer's
namespace for that peer's gathering and back out, and nothing else runs on the loop meanwhile.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from peer_agent.link_path import selected_path
from protocol.links import LinkPath
from tests.network.natlab import NatLab, inside


@dataclass
class Pair:
    """A linked pair: `a` offered, `b` answered; `connect_ms` from the offer to an open
    channel on both sides."""

    a: RTCPeerConnection
    b: RTCPeerConnection
    connect_ms: float
    channel_a: Any
    channel_b: Any
    arrivals: asyncio.Queue[tuple[str, float]] = field(default_factory=asyncio.Queue)

    def paths(self) -> tuple[LinkPath | None, LinkPath | None]:
        return selected_path(self.a), selected_path(self.b)

    async def one_way_ms(self, count: int = 50, timeout: float = 5.0) -> dict[str, float]:
        """Send `count` 100-byte messages from a to b, one at a time, and time each from
        `send` to b's handler; p50 and p90 in ms."""
        times = []
        for i in range(count):
            text = f"{i:06d}" + "x" * 94
            sent = time.perf_counter()
            self.channel_a.send(text)
            while True:
                async with asyncio.timeout(timeout):
                    got, at = await self.arrivals.get()
                if got == text:
                    break
            times.append((at - sent) * 1000)
        times.sort()
        return {"p50": statistics.median(times), "p90": times[int(len(times) * 0.9) - 1]}

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


def _pc(servers: list[dict[str, Any]]) -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**s) for s in servers]))


async def open_pair(lab: NatLab, servers_a: list[dict[str, Any]],
                    servers_b: list[dict[str, Any]], timeout: float = 20.0) -> Pair:
    """Link a peer in namespace "a" to one in "b", each with its own ICE servers."""
    started = time.perf_counter()
    a, b = _pc(servers_a), _pc(servers_b)
    arrivals: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    opened = asyncio.get_running_loop().create_future()
    channel_a = a.createDataChannel("bench", ordered=True)
    channel_a.on("open", lambda: None)

    @b.on("datachannel")
    def on_datachannel(channel: Any) -> None:
        @channel.on("message")
        def on_message(message: Any) -> None:
            arrivals.put_nowait((message, time.perf_counter()))

        if not opened.done():
            opened.set_result(channel)

    with inside(lab.ns("a")):
        await a.setLocalDescription(await a.createOffer())
    with inside(lab.ns("b")):
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
    with inside(lab.ns("a")):
        await a.setRemoteDescription(b.localDescription)
    try:
        async with asyncio.timeout(timeout):
            channel_b = await opened
            while channel_a.readyState != "open":
                await asyncio.sleep(0.005)
    except TimeoutError:
        await a.close()
        await b.close()
        raise
    connect_ms = (time.perf_counter() - started) * 1000
    return Pair(a, b, connect_ms, channel_a, channel_b, arrivals)
