"""The ceiling for bench.mesh: bare aiortc data channels between N peers in one process, ICE
pinned to 127.0.0.1, no signing, storage or UI. A full mesh of peer connections; S of the peers
each broadcast M messages to every other peer, and the idle one-way time of one message."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from peer_agent.ice import pin_ice_hosts

TEXT = "x" * 100
WINDOW = 16  # messages a sender may run ahead of its slowest receiver


@dataclass
class Peer:
    """One peer of the bare mesh: its channel to each other peer, and what it received."""

    index: int
    channels: dict[int, RTCDataChannel] = field(default_factory=dict)
    received: int = 0
    got: dict[str, int] = field(default_factory=dict)
    waiter: asyncio.Future[float] | None = None
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, data: str | bytes) -> None:
        now = time.perf_counter()
        self.received += 1
        author = data[:2] if isinstance(data, str) else ""
        self.got[author] = self.got.get(author, 0) + 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(now)
        if self.expected and self.received >= self.expected:
            self.done.set()


@dataclass
class BareResult:
    """What the bare mesh measured: room-wide messages per second and one-way seconds."""

    msgs_per_s: float
    one_way: list[float]
    cpu: float = 0.0
    """Seconds of this process's CPU over the load (every peer's share)."""


async def _link(a: Peer, b: Peer, pcs: list[RTCPeerConnection]) -> None:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pcs += [offerer, answerer]
    opened = asyncio.Event()
    channel = offerer.createDataChannel("chat")
    channel.on("open", opened.set)
    channel.on("message", a.on_message)
    a.channels[b.index] = channel

    @answerer.on("datachannel")
    def on_channel(remote: RTCDataChannel) -> None:
        remote.on("message", b.on_message)
        b.channels[a.index] = remote

    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    async with asyncio.timeout(30):
        await opened.wait()
        while a.index not in b.channels:
            await asyncio.sleep(0.01)


async def _measure(peers: int, senders: int, messages: int, idle: int) -> BareResult:
    mesh = [Peer(i) for i in range(peers)]
    pcs: list[RTCPeerConnection] = []
    try:
        for i in range(peers):
            for j in range(i + 1, peers):
                await _link(mesh[i], mesh[j], pcs)
        one_way: list[float] = []
        receiver = mesh[-1]
        for n in range(idle + 5):  # the first five warm up and are not counted
            sender = mesh[n % (peers - 1)]
            receiver.waiter = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            sender.channels[receiver.index].send(f"{n:06d} {TEXT}")
            arrived = await asyncio.wait_for(receiver.waiter, 10)
            if n >= 5:
                one_way.append(arrived - start)
        receiver.waiter = None
        for peer in mesh:
            peer.received = 0
            peer.expected = sum(messages for s in range(senders) if s != peer.index)
            peer.got.clear()
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(_send(sender, mesh, messages) for sender in mesh[:senders]))
        await asyncio.wait_for(asyncio.gather(*(p.done.wait() for p in mesh if p.expected)),
                               300)
        elapsed = time.perf_counter() - start
        return BareResult(senders * messages / elapsed, one_way, time.process_time() - cpu)
    finally:
        for pc in pcs:
            await pc.close()


async def _send(sender: Peer, mesh: list[Peer], messages: int) -> None:
    """Broadcast `messages` messages, at most WINDOW ahead of the slowest receiver."""
    author = f"{sender.index:02d}"
    others = [p for p in mesh if p is not sender]
    for n in range(messages):
        while min(p.got.get(author, 0) for p in others) < n - WINDOW:
            await asyncio.sleep(0.0005)
        for channel in sender.channels.values():
            channel.send(f"{author} {n:06d} {TEXT}")


def measure_bare(peers: int, senders: int, messages: int, idle: int) -> BareResult:
    """Run the bare mesh of `peers` peers in a fresh event loop; ICE pinned to 127.0.0.1."""
    pin_ice_hosts(["127.0.0.1"])
    try:
        return asyncio.run(_measure(peers, senders, messages, idle))
    finally:
        pin_ice_hosts(None)
