"""Delayed SACKs (peer_agent/sctp_acks.py) on real aiortc data channels over loopback: fewer
SACK packets, every message still delivered once and in order, a lone packet acknowledged
within the delay (never retransmitted), and a lost packet retransmitted quickly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection
from aiortc.rtcsctptransport import RTCSctpTransport

from bench.sctp_acks import counting
from peer_agent import sctp_acks
from peer_agent.ice import pin_ice_hosts

DATA_CHUNK = 0  # SCTP chunk type of DATA (RFC 9260 section 3.2)


@pytest.fixture(autouse=True)
def pinned() -> Iterator[None]:
    pin_ice_hosts(["127.0.0.1"])
    try:
        yield
    finally:
        pin_ice_hosts(None)
        sctp_acks.install(0)


@dataclass
class Link:
    """One ordered data channel from `sender` to `receiver`, and what arrived."""

    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    channel: RTCDataChannel
    received: list[str] = field(default_factory=list)
    echoed: list[str] = field(default_factory=list)

    @property
    def association(self) -> RTCSctpTransport:
        assert self.sender.sctp is not None
        return self.sender.sctp

    async def wait_for(self, count: int, timeout: float) -> float:
        """Seconds until `count` messages arrived (fails after `timeout`)."""
        start = time.monotonic()
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.001)
        return time.monotonic() - start


@asynccontextmanager
async def link(echo: bool = False) -> AsyncIterator[Link]:
    """A linked pair; with `echo`, the receiver sends each message back as it arrives."""
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = sender.createDataChannel("chat")
    opened = asyncio.Event()
    channel.on("open", opened.set)
    result = Link(sender, receiver, channel)

    channel.on("message", lambda data: result.echoed.append(data))

    @receiver.on("datachannel")
    def on_channel(remote: RTCDataChannel) -> None:
        def on_message(data: str) -> None:
            result.received.append(data)
            if echo:
                remote.send(data)
        remote.on("message", on_message)

    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        async with asyncio.timeout(20):
            await opened.wait()
        yield result
    finally:
        await sender.close()
        await receiver.close()


async def burst(count: int) -> tuple[list[str], int]:
    """`count` messages sent at once: what arrived, and the data packets they took."""
    async with link() as chat:
        sent_before = chat.association._local_tsn
        for i in range(count):
            chat.channel.send(f"message {i}")
        await chat.wait_for(count, timeout=20)
        async with asyncio.timeout(5):  # the last SACK (at most the delay) empties the queue
            while chat.association._sent_queue:
                await asyncio.sleep(0.001)
        packets = (chat.association._local_tsn - sent_before) % 2**32
        return chat.received, packets


def test_a_burst_arrives_whole_in_order_with_half_the_sacks_or_fewer() -> None:
    expected = [f"message {i}" for i in range(300)]

    sctp_acks.install(0)
    with counting() as counts:
        received, packets = asyncio.run(burst(300))
    per_packet = counts["sacks"]
    assert received == expected
    assert per_packet >= packets, "aiortc's own rule: a SACK for every packet"

    assert sctp_acks.install(0.02) == 0.02
    with counting() as counts:
        received, packets = asyncio.run(burst(300))
    assert received == expected
    assert 0 < counts["sacks"] <= packets * 0.55 + 5, (counts["sacks"], packets, per_packet)


def test_a_lone_message_is_acknowledged_within_the_delay_and_never_sent_twice() -> None:
    sctp_acks.install(0.05)

    async def lone() -> tuple[list[float], list[int]]:
        async with link() as chat:
            chunks, waits = [], []
            for i in range(6):  # each alone: the one before is acknowledged first
                chat.channel.send(f"alone {i}")
                async with asyncio.timeout(5):  # the channel sends from a task of its own
                    while not chat.association._sent_queue:
                        await asyncio.sleep(0.001)
                chunk = chat.association._sent_queue[-1]
                chunks.append(chunk)
                async with asyncio.timeout(0.9):  # aiortc retransmits after 1 s at the soonest
                    while chat.association._sent_queue:
                        await asyncio.sleep(0.001)
                waits.append(time.time() - chunk._sent_time)  # aiortc's own clock for it
            await chat.wait_for(6, timeout=5)
            assert chat.received == [f"alone {i}" for i in range(6)]
            return waits, [chunk._sent_count for chunk in chunks]

    waits, sent_counts = asyncio.run(lone())
    assert sent_counts == [1] * 6
    # Each SACK waited for a second packet that never came, then for the delay (the first
    # message's packet was the second after the channel's opening, acknowledged at once).
    assert all(0.04 <= waited < 0.9 for waited in waits[1:]), waits


def test_a_lost_packet_is_sent_again_soon_and_nothing_is_lost_or_doubled() -> None:
    sctp_acks.install(0.2)

    async def lossy() -> tuple[list[str], float, int]:
        async with link() as chat:
            dtls = chat.association.transport
            send = dtls._send_data
            data_packets = [0]

            async def dropping_the_fifth(data: bytes) -> None:
                if len(data) > 12 and data[12] == DATA_CHUNK:
                    data_packets[0] += 1
                    if data_packets[0] == 5:
                        return
                await send(data)

            dtls._send_data = dropping_the_fifth  # type: ignore[method-assign]
            for i in range(40):
                chat.channel.send(f"message {i}")
            took = await chat.wait_for(40, timeout=10)
            return chat.received, took, data_packets[0]

    received, took, packets = asyncio.run(lossy())
    assert received == [f"message {i}" for i in range(40)]
    assert packets > 40, "the lost packet was sent again"
    # A fast retransmit on the gap's SACKs; a timer (aiortc's T3: 1 s at least) would be slower.
    assert took < 0.9, f"the lost packet took {took:.2f} s to arrive again"


def test_a_conversation_carries_its_sacks_in_its_data_packets() -> None:
    """Messages both ways: each side's SACK rides on its next message instead of leaving in a
    packet of its own (a SACK per packet is two datagrams per message)."""

    async def conversation(messages: int) -> tuple[list[str], list[str]]:
        async with link(echo=True) as chat:
            for i in range(messages):  # one at a time: the next when the echo is back
                chat.channel.send(f"turn {i}")
                async with asyncio.timeout(10):
                    while len(chat.echoed) <= i:
                        await asyncio.sleep(0.0005)
            return chat.received, chat.echoed

    def datagrams_per_message(messages: int) -> tuple[list[str], list[str], float]:
        with counting() as counts:  # every DTLS record either side sends
            received, echoed = asyncio.run(conversation(messages))
        return received, echoed, counts["datagrams"] / (2 * messages)

    sctp_acks.install(0.05)
    received, echoed, per_message = datagrams_per_message(100)
    expected = [f"turn {i}" for i in range(100)]
    assert received == expected and echoed == expected
    assert per_message < 1.2, f"{per_message:.2f} datagrams per message"

    sctp_acks.install(0)
    _, _, alone = datagrams_per_message(100)
    assert alone >= 1.9, f"aiortc's own rule: {alone:.2f} datagrams per message"
