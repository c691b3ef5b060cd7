"""Time to deliver a message by each way it can travel, measured in one run: over the direct
data channel, and, between two peers a firewall keeps apart, through the server (it names the
message in its `stored` broadcast; the receiver reads its history) and through a third peer
linked to both (its digest tells the receiver; the receiver pulls), with the server up and
after it is killed.

    .venv/bin/python -m bench.delivery_paths [--messages 30] [--no-write]

Real processes on the routed network of the fault tests (tests/faults/routed_network.py): a
server on the hub, alice, bob and carol each on a host of their own, an iptables DROP rule
between bob and carol. A sample is from `POST /api/messages` on the sender to the message's
arrival on the receiver's UI WebSocket; the receiver's path of it says which way it came.
Samples are 0.3 s apart, so each measures a path and not a queue. Needs root and iptables."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import machine, percentile, write_section
from launcher import start_all, ui_events
from tests.faults.routed_network import RoutedNetwork, unavailable_reason
from tests.faults.routed_room import HostedAgent, HubServer, wait_state

GAP = 0.3  # seconds between samples: more than the catch-up rules' HINT_GAP (0.25 s)


@dataclass
class Way:
    """The samples of one way of delivery, with how the receiver says each one came."""

    name: str
    samples: list[float] = field(default_factory=list)
    came: Counter[str] = field(default_factory=Counter)


class Endpoint:
    """An agent's UI as the bench uses it: its own HTTP session and WebSocket, opened inside
    its host (UI ports of different hosts may coincide, so nothing is pooled across them)."""

    def __init__(self, agent: HostedAgent) -> None:
        self.agent = agent
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> None:
        self.http = aiohttp.ClientSession()
        with self.agent.host.inside():
            self.ws = await self.http.ws_connect(self.agent.url.replace("http", "ws") + "/ws")

    async def post(self, text: str) -> None:
        assert self.http is not None
        with self.agent.host.inside():
            async with self.http.post(self.agent.url + "/api/messages",
                                      json={"text": text}) as reply:
                assert reply.status == 201, await reply.text()

    async def arrival(self, text: str) -> str:
        """Wait for `text` on the WebSocket; returns its id."""
        assert self.ws is not None
        while True:
            for event in ui_events(await self.ws.receive_json(timeout=30)):
                if event["type"] == "message" and event["message"]["text"] == text:
                    return str(event["message"]["id"])

    async def came(self, message_id: str) -> str:
        """How the message reached this agent, from its path: server, a user, or live."""
        assert self.http is not None
        with self.agent.host.inside():
            async with self.http.get(f"{self.agent.url}/api/messages/{message_id}/path") as r:
                steps: list[dict[str, Any]] = (await r.json())["steps"]
        step = next(s for s in steps if s["what"] == "received")
        if step["via"] == "server":
            return "via the server"
        if step["via"] == "channel":
            return "direct (live)"
        return f"via {step['user'].split('-')[0]}"

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()


async def sample(way: Way, sender: Endpoint, receiver: Endpoint, n: int) -> None:
    text = f"{way.name} {n} {secrets.token_hex(4)}"
    start = time.perf_counter()
    await sender.post(text)
    message_id = await receiver.arrival(text)
    way.samples.append(time.perf_counter() - start)
    way.came[await receiver.came(message_id)] += 1
    await asyncio.sleep(GAP)


async def measure_pairs(pairs: list[tuple[Way, Endpoint, Endpoint]], messages: int) -> None:
    """Sample every pair in turn (interleaved, so they see the same machine)."""
    for n in range(messages):
        for way, sender, receiver in pairs:
            await sample(way, sender, receiver, n)


def run(work: Path, messages: int) -> list[Way]:
    network = RoutedNetwork()
    agents: list[HostedAgent] = []
    server = HubServer(work / "server")
    try:
        a, b, c = network.add_host(), network.add_host(), network.add_host()
        network.block(b, c)
        server.start()
        room = "bench-" + secrets.token_hex(3)

        def make(name: str, host: Any) -> HostedAgent:
            agent = HostedAgent(host, server, f"{name}-{secrets.token_hex(3)}", room,
                                work / name, sync_interval=3.0)
            agents.append(agent)
            return agent

        bob, carol = make("bob", b), make("carol", c)
        start_all([bob, carol])  # side by side: their start-ups overlap
        wait_state(bob, server_up=True, linked=set(), listed={carol.name})
        wait_state(carol, server_up=True, linked=set(), listed={bob.name})
        via_server = Way("bob → carol, no peer between them, server up")
        asyncio.run(_phase([(via_server, bob, carol)], messages))

        alice = make("alice", a)
        alice.start()
        for agent, others in ((alice, {bob.name, carol.name}), (bob, {alice.name}),
                              (carol, {alice.name})):
            wait_state(agent, server_up=True, linked=others, listed=set())
        direct = Way("alice → bob, direct data channel, server up")
        via_peer = Way("bob → carol, alice linked to both, server up")
        asyncio.run(_phase([(direct, alice, bob), (via_peer, bob, carol)], messages))

        server.stop()
        for agent in agents:
            wait_state(agent, server_up=False, linked=set(), listed=set())
        direct_down = Way("alice → bob, direct data channel, server down")
        via_peer_down = Way("bob → carol, alice linked to both, server down")
        asyncio.run(_phase([(direct_down, alice, bob), (via_peer_down, bob, carol)], messages))
        assert network.dropped() > 0, "the firewall between bob and carol was never hit"
        return [direct, via_server, via_peer, direct_down, via_peer_down]
    finally:
        for agent in agents:
            agent.stop()
        server.stop()
        network.close()


async def _phase(pairs: list[tuple[Way, HostedAgent, HostedAgent]], messages: int) -> None:
    ends: dict[str, Endpoint] = {}
    try:
        for _, sender, receiver in pairs:
            for agent in (sender, receiver):
                if agent.name not in ends:
                    ends[agent.name] = Endpoint(agent)
                    await ends[agent.name].open()
        await measure_pairs([(way, ends[s.name], ends[r.name]) for way, s, r in pairs],
                            messages)
    finally:
        for end in ends.values():
            await end.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery_paths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30, help="samples per path")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}")
        return 2
    ways = run(Path(tempfile.mkdtemp(prefix="gibberish-bench-")), args.messages)

    def ms(samples: list[float], p: float) -> str:
        return f"{percentile(samples, p) * 1000:.1f}"

    table = ["| path | how the receiver says it came | p50 ms | p95 ms | max ms |",
             "|---|---|---|---|---|"]
    for way in ways:
        came = ", ".join(f"{how} ×{count}" for how, count in way.came.most_common())
        table.append(f"| {way.name} | {came} | {ms(way.samples, 50)} | "
                     f"{ms(way.samples, 95)} | {max(way.samples) * 1000:.1f} |")
    text = "\n".join([
        "## Delivery paths: direct, through the server, through a peer",
        "",
        f"`python -m bench.delivery_paths --messages {args.messages}`: {args.messages} "
        "messages per path, one at a time, 0.3 s apart, each from `POST /api/messages` on the "
        "sender to its arrival on the receiver's UI WebSocket. bob and carol sit behind a "
        "firewall rule that drops every packet between them (separate network namespaces); "
        "alice is linked to both. Agents at the default sync interval (3 s). Machine: "
        f"{machine('aiortc', 'aioice', 'Flask-SocketIO')}.",
        "",
        *table,
        "",
        "Through the server, the receiver waits 0.2 s after the `stored` broadcast before it "
        "reads the history (a peer may bring the message first), so that path costs about "
        "0.2 s plus an upload and a history read. Through a peer, the peer's digest (sent at "
        "once to a peer whose link report shows no channel to the author) makes the receiver "
        "pull: three frames more than the direct path. With the server up both ways race, "
        "and the peer usually wins.",
    ])
    print(text)
    if not args.no_write:
        print(f"written to {write_section('delivery-paths', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
