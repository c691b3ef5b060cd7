"""A room of real agents for bench.mesh: a server subprocess and N `python -m peer_agent`
subprocesses on loopback (ICE pinned to 127.0.0.1), driven through each agent's HTTP API and
watched on each agent's UI WebSocket.

Every message is counted as shown when its `message` event reaches the UI WebSocket of each
agent, its author's included."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from launcher import ui_events
from tests.peer_agent.agents import AgentProcess, start_agent, wait_connected
from tests.signaling.conftest import SHARED_SERVER_LIMITS, ServerProcess, start_server

TEXT = "x" * 100
SERVER_LIMITS = {**SHARED_SERVER_LIMITS, "RATELIMIT_SIGNAL": "1000000 per 10 seconds",
                 "RATELIMIT_PUBLISH": "1000000 per 10 seconds",
                 "RATELIMIT_JOIN": "100000 per minute",
                 "RATELIMIT_JOIN_ROOM": "100000 per minute",
                 "RATELIMIT_JOIN_ROOMS": "100000 per minute"}
TICKS = os.sysconf("SC_CLK_TCK")
# How the agent's json.dumps starts a message event, or a batch of one loop turn's events.
EVENTS_WANTED = ('{"type": "message"', '{"type": "batch"')


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15


@dataclass
class Watch:
    """When each text was posted, and when it was shown on each agent's WebSocket."""

    agents: int
    posted: dict[str, tuple[int, float]] = field(default_factory=dict)  # text → (author, t)
    ids: dict[str, str] = field(default_factory=dict)  # text → message id
    shown: dict[str, dict[int, float]] = field(default_factory=dict)  # text → agent → t
    waiting: dict[str, asyncio.Event] = field(default_factory=dict)
    missing: int = 0
    all_shown: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, texts: int) -> None:
        """Arm `all_shown` for the next `texts` posts being shown on every agent."""
        self.missing = texts * self.agents
        self.all_shown.clear()

    def saw(self, agent: int, text: str, at: float) -> None:
        seen = self.shown.setdefault(text, {})
        if agent in seen:
            return
        seen[agent] = at
        if self.missing:
            self.missing -= 1
            if self.missing == 0:
                self.all_shown.set()
        if len(seen) == self.agents and text in self.waiting:
            self.waiting[text].set()

    def one_way(self, texts: list[str]) -> list[float]:
        """Seconds from each post to its showing on every agent other than its author."""
        samples = []
        for text in texts:
            author, start = self.posted[text]
            samples += [t - start for a, t in self.shown[text].items() if a != author]
        return samples


class Room:
    """Open UI WebSockets to every agent of a running room, post and time what they show."""

    def __init__(self, agents: list[AgentProcess]) -> None:
        self.agents = agents
        self.watch = Watch(len(agents))
        self._readers: list[asyncio.Task[None]] = []
        self.http: aiohttp.ClientSession | None = None
        self.idle_texts: list[str] = []  # the counted texts of the last idle pass
        self.steps: list[str] | None = None  # bench.mesh_trace's table of that pass

    async def __aenter__(self) -> Room:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for index, agent in enumerate(self.agents):
            ws = await self.http.ws_connect(agent.url.replace("http", "ws") + "/ws",
                                            max_msg_size=0)
            self._readers.append(asyncio.create_task(self._read(index, ws)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self.http is not None:
            await self.http.close()

    async def _read(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT or not msg.data.startswith(EVENTS_WANTED):
                continue
            at = time.perf_counter()
            for event in ui_events(msg.json()):
                if event["type"] == "message":
                    self.watch.saw(index, event["message"]["text"], at)

    async def post(self, author: int, text: str, at: float | None = None) -> None:
        """Post `text` from agent `author`; its one-way time counts from `at` (now if None)."""
        assert self.http is not None
        self.watch.posted[text] = (author, time.perf_counter() if at is None else at)
        async with self.http.post(self.agents[author].url + "/api/messages",
                                  json={"text": text}) as reply:
            assert reply.status == 201, await reply.text()
            self.watch.ids[text] = (await reply.json())["message"]["id"]

    async def idle(self, messages: int, senders: int, gap: float = 0.0) -> list[float]:
        """Post `messages` one at a time (round robin over the senders), each only after the
        last was shown everywhere and `gap` seconds more (the room settles: receipts, the
        server's word, state pushes); the one-way seconds of each to each other agent."""
        texts: list[str] = []
        self.idle_texts = texts
        for n in range(messages + 5):  # the first five warm up and are not counted
            text = f"idle {n:06d} {secrets.token_hex(3)} {TEXT}"
            self.watch.waiting[text] = event = asyncio.Event()
            await self.post(n % senders, text)
            await asyncio.wait_for(event.wait(), 30)
            if gap:
                await asyncio.sleep(gap)
            if n >= 5:
                texts.append(text)
        return self.watch.one_way(texts)

    async def load(self, senders: int, messages: int) -> tuple[float, list[float]]:
        """Each of `senders` agents posts `messages`, one request in flight each; returns the
        seconds until all were shown on every agent, and the one-way seconds under that load."""
        tag = secrets.token_hex(3)
        texts = [[f"load {s} {n:06d} {tag} {TEXT}" for n in range(messages)]
                 for s in range(senders)]
        self.watch.expect(senders * messages)

        async def send(author: int) -> None:
            for text in texts[author]:
                await self.post(author, text)

        start = time.perf_counter()
        await asyncio.gather(*(send(s) for s in range(senders)))
        await asyncio.wait_for(self.watch.all_shown.wait(), 600)
        last = max(max(self.watch.shown[t].values()) for ts in texts for t in ts)
        return last - start, self.watch.one_way([t for ts in texts for t in ts])

    async def paced(self, senders: int, messages: int, rate: float) -> list[float]:
        """Each of `senders` agents posts `messages` at a steady pace, `rate` messages a second
        room-wide between them (open loop: a post leaves on time whether or not the last was
        answered); the one-way seconds of each to each other agent."""
        tag = secrets.token_hex(3)
        texts = [[f"paced {s} {n:06d} {tag} {TEXT}" for n in range(messages)]
                 for s in range(senders)]
        self.watch.expect(senders * messages)
        gap = senders / rate  # between two posts of one sender
        start = time.perf_counter()

        async def send(author: int) -> None:
            posts = []
            for n, text in enumerate(texts[author]):
                due = start + (n + author / senders) * gap  # the senders interleaved evenly
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                # Timed from when it was due: a late start of this client counts too.
                posts.append(asyncio.create_task(self.post(author, text, due)))
            await asyncio.gather(*posts)

        await asyncio.gather(*(send(s) for s in range(senders)))
        await asyncio.wait_for(self.watch.all_shown.wait(), 600)
        return self.watch.one_way([t for ts in texts for t in ts])


@contextmanager
def running_room(work: Path, agents: int) -> Iterator[tuple[ServerProcess, list[AgentProcess]]]:
    """A server and `agents` agents in one fresh room, each linked to all the others; all
    stopped by pid on exit."""
    server = start_server(work / "server", SERVER_LIMITS)
    room = "mesh-" + secrets.token_hex(3)
    started: list[AgentProcess] = []
    try:
        for i in range(agents):
            started.append(start_agent(server.url, f"mesh{i}-{secrets.token_hex(3)}", room,
                                       work / f"agent{i}"))
        for agent in started:
            wait_connected(agent, agents - 1, timeout=120)
        yield server, started
    finally:
        for agent in started:
            agent.stop()
        server.stop()
