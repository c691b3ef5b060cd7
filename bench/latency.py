"""Message latency: from `POST /api/messages` on one agent to the message's arrival on another
agent's UI WebSocket (peer to peer over a data channel), next to the same-sized message relayed
through the server's Socket.IO (`signal`) between two clients, measured in one run.

    .venv/bin/python -m bench.latency [--messages 300] [--no-write]

Everything runs on loopback: a server subprocess, two agents pinned to 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from bench.report import machine, percentile, write_section
from launcher import AgentProcess, ServerProcess, start_all, stop_all, ui_events
from launcher.server import OPEN_LIMITS
from tests.helpers import poll
from tests.signaling.conftest import register_account

TEXT = "x" * 100


async def agent_sample(http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                       sender_url: str, n: int) -> float:
    text = f"{n:06d} {TEXT}"
    start = time.perf_counter()
    async with http.post(sender_url + "/api/messages", json={"text": text}) as reply:
        assert reply.status == 201, await reply.text()
    while True:
        for event in ui_events(await ws.receive_json(timeout=10)):
            if event["type"] == "message" and event["message"]["text"] == text:
                return time.perf_counter() - start


class RelayPair:
    """Two Socket.IO clients in one room; one signals the other through the server."""

    def __init__(self) -> None:
        self.a = socketio.AsyncClient()
        self.b = socketio.AsyncClient()
        self.waiting: asyncio.Future[str] | None = None

    async def start(self, url: str, room: str) -> None:
        accounts = [await asyncio.to_thread(register_account, url, "relay") for _ in range(2)]
        self.b_device = accounts[1].key.device_id

        @self.b.on("signal")  # type: ignore[untyped-decorator]
        async def on_signal(data: dict[str, Any]) -> None:
            text = data.get("payload", {}).get("text")
            if text and self.waiting is not None and not self.waiting.done():
                self.waiting.set_result(text)

        for client, account in ((self.a, accounts[0]), (self.b, accounts[1])):
            await client.connect(url, auth={"token": account.token}, transports=["websocket"])
            reply = await client.call("join", {"room": room, "device": account.key.device_id})
            assert reply["ok"], reply

    async def sample(self, n: int) -> float:
        text = f"{n:06d} {TEXT}"
        self.waiting = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        await self.a.emit("signal", {"room": RELAY_ROOM, "to": self.b_device, "kind": "offer",
                                     "payload": {"text": text}})
        got = await asyncio.wait_for(self.waiting, 10)
        assert got == text
        return time.perf_counter() - start

    async def close(self) -> None:
        await self.a.disconnect()
        await self.b.disconnect()


ROOM = "bench-" + secrets.token_hex(3)
PASSWORD = "bench-password-" + secrets.token_hex(4)
RELAY_ROOM = ROOM + "-relay"  # apart from the agents, who would try to connect to the pair


async def measure(server_url: str, sender_url: str, receiver_url: str, messages: int,
                  ) -> tuple[list[float], list[float]]:
    relay = RelayPair()
    await relay.start(server_url, RELAY_ROOM)
    p2p: list[float] = []
    via_server: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(receiver_url.replace("http", "ws") + "/ws") as ws:
            for n in range(20):  # warm-up, not counted
                await agent_sample(http, ws, sender_url, n)
                await relay.sample(n)
            for n in range(20, 20 + messages):  # interleaved, so both see the same machine
                p2p.append(await agent_sample(http, ws, sender_url, n))
                via_server.append(await relay.sample(n))
    await relay.close()
    return p2p, via_server


def _linked(agent: AgentProcess) -> bool:
    """The agent joined the server and has an open data channel to its one peer."""
    state = agent.state()
    return bool(state["server"]["connected"]) and bool(agent.linked_users())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gibberish-bench-"))
    server = ServerProcess(work / "server", env={
        **OPEN_LIMITS, "RATELIMIT_SIGNAL": "1000000 per 10 seconds",
        "RATELIMIT_PUBLISH": "1000000 per 10 seconds"})
    agents = [AgentProcess(server, f"bench{i}-{secrets.token_hex(3)}", ROOM, work / f"agent{i}",
                           PASSWORD) for i in range(2)]
    try:
        server.start()
        start_all(agents)
        for agent in agents:
            poll(partial(_linked, agent), timeout=60, message=f"{agent.name} linked")
        p2p, relay = asyncio.run(measure(server.url, agents[0].url, agents[1].url,
                                         args.messages))
    finally:
        stop_all([server, *agents])

    def ms(samples: list[float], p: float) -> float:
        return percentile(samples, p) * 1000

    rows = [
        ("agent → agent (data channel, signed, logged, to the UI WebSocket)", p2p),
        ("client → client relayed by the server's Socket.IO (`signal`)", relay),
    ]
    table = ["| path | p50 ms | p99 ms |", "|---|---|---|"]
    table += [f"| {name} | {ms(s, 50):.2f} | {ms(s, 99):.2f} |" for name, s in rows]
    ratio50 = percentile(p2p, 50) / percentile(relay, 50)
    ratio99 = percentile(p2p, 99) / percentile(relay, 99)
    text = "\n".join([
        "## Message latency: peer to peer vs relayed by the server",
        "",
        f"`python -m bench.latency --messages {args.messages}`: {args.messages} messages of "
        f"{len(TEXT) + 7} characters, sent one at a time, the two paths interleaved. Machine: "
        f"{machine('aiortc', 'aioice', 'Flask-SocketIO', 'python-socketio')}.",
        "",
        *table,
        "",
        f"Ratio agent path / server relay: p50 {ratio50:.2f}, p99 {ratio99:.2f}. The agent "
        "path does more work per message (HTTP POST into the agent, Ed25519 signing and "
        "verification, two SQLite commits, the UI WebSocket push); the relay only forwards.",
    ])
    print(text)
    if not args.no_write:
        print(f"written to {write_section('latency', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
