"""A page that reads a room, told over the agent's UI WebSocket, with a real agent, a real peer
and a real aiohttp WebSocket client: the peer's messages in that room are seen as they come
(not counted unread, no room list pushed for each), another room still counts, the read marker
is in the log once the page stops reading, and whatever else a page sends is ignored with the
socket left open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from launcher import LOOPBACK_RECONNECT_MAX, start_all, ui_events
from peer_agent.log import LocalLog
from tests.helpers import poll
from tests.peer_agent.agents import AgentProcess
from tests.peer_agent.test_device_rooms import linked_in
from tests.signaling.conftest import ServerProcess, unique_name

PASSWORD = "password-" + "x" * 8
READ_TIMEOUT = 30.0  # s: generous, the 2-core machine is shared

# Frames a page could send by mistake: each is ignored, none closes the socket.
BAD_FRAMES = [
    "not json",
    "[1, 2]",
    '"reading"',
    '{"type": "typing", "room": null}',
    '{"room": null}',
    '{"type": "reading"}',
    '{"type": "reading", "room": 7}',
    '{"type": "reading", "room": ["a"]}',
    '{"type": "reading", "room": "' + "r" * 65 + '"}',
    '{"type": "reading", "room": "no-such-room"}',
    '{"type": "reading", "room": null, "room": null}',
    '{"type": "reading", "room": "' + "r" * 10_000 + '"}',
]


class PageSocket:
    """The agent's UI WebSocket as a page holds it: the live events it received, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._pings = 0

    async def read_until(self, done: Callable[[list[dict[str, Any]]], bool],
                         what: str) -> None:
        """Read frames until `done(events)`, within READ_TIMEOUT."""
        deadline = time.monotonic() + READ_TIMEOUT
        while not done(self.events):
            await self._next(deadline, what)

    async def settled(self) -> None:
        """Return once the agent has handled every frame sent before: it answers a ping only
        after the frames ahead of it (aiohttp's autoping, in the handler's read loop); the
        socket is still open."""
        self._pings += 1
        payload = f"settled {self._pings}".encode()
        await self.ws.ping(payload)
        deadline = time.monotonic() + READ_TIMEOUT
        while await self._next(deadline, "the agent's pong") != payload:
            pass

    async def _next(self, deadline: float, what: str) -> bytes | None:
        """Read one frame: its events are kept; a pong's payload is returned."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                msg = await self.ws.receive()
        except TimeoutError:
            raise AssertionError(f"timed out after {READ_TIMEOUT}s waiting for {what}") from None
        if msg.type == aiohttp.WSMsgType.TEXT:
            self.events += ui_events(json.loads(msg.data))
        elif msg.type == aiohttp.WSMsgType.PING:
            await self.ws.pong(msg.data)  # the agent's heartbeat
        elif msg.type == aiohttp.WSMsgType.PONG:
            return bytes(msg.data)
        else:
            raise AssertionError(f"the socket ended ({msg.type.name}) waiting for {what}")
        return None


def texts_in(events: list[dict[str, Any]], room: str) -> list[str]:
    return [e["message"]["text"] for e in events
            if e["type"] == "message" and e.get("room") == room]


def unread(agent: AgentProcess, room: str) -> int:
    return int({r["name"]: r["unread"] for r in agent.room_list()}[room])


def start_two(server: ServerProcess, base: Path, rooms: tuple[str, str],
              agents: list[AgentProcess]) -> tuple[AgentProcess, AgentProcess]:
    """alice and bob, both in both rooms, linked."""
    made = [AgentProcess(server.url, unique_name(name), rooms[0], base / name, PASSWORD,
                         rooms=rooms[1:], reconnect_max=LOOPBACK_RECONNECT_MAX)
            for name in ("alice", "bob")]
    agents += made
    start_all(made)
    alice, bob = made
    poll(lambda: all(linked_in(alice, room, bob) for room in rooms), timeout=60,
         message="alice linked to bob in both rooms")
    return alice, bob


async def read_room(alice: AgentProcess, bob: AgentProcess, read: str, other: str) -> None:
    """A page on alice's UI reads `read` while bob writes there, then in `other`."""
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(alice.url + "/ws", autoping=False) as ws:
        page = PageSocket(ws)
        await page.read_until(lambda events: any(e["type"] == "rooms" for e in events),
                              "the room list")
        await ws.send_str(json.dumps({"type": "reading", "room": read}))
        for bad in BAD_FRAMES:
            await ws.send_str(bad)
        await ws.send_bytes(b'{"type": "reading", "room": null}')
        await page.settled()  # each handled, the socket open, and `read` still read
        page.events.clear()

        sent = [f"seen {n}" for n in range(5)]
        for text in sent:
            await asyncio.to_thread(bob.send, text, room=read)
        await page.read_until(lambda events: texts_in(events, read) == sent,
                              "bob's messages in the room read")
        assert [e for e in page.events if e["type"] == "rooms"] == []
        assert await asyncio.to_thread(unread, alice, read) == 0

        # A room no page reads counts as before, and says so to the pages.
        await asyncio.to_thread(bob.send, "elsewhere", room=other)
        await page.read_until(lambda events: any(
            e["type"] == "rooms" and {r["name"]: r["unread"] for r in e["rooms"]}[other] == 1
            for e in events), "the other room's count")
        assert await asyncio.to_thread(unread, alice, other) == 1
        assert await asyncio.to_thread(unread, alice, read) == 0


def test_a_room_a_page_reads_counts_nothing_unread_and_its_read_marker_follows(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    read, other = unique_name("read"), unique_name("other")
    alice, bob = start_two(server, tmp_path, (read, other), agents)
    asyncio.run(read_room(alice, bob, read, other))
    # The page closed: what it saw is read in the log too, so a restart counts none of it.
    with LocalLog(alice.data_dir / "log.sqlite3") as log:
        poll(lambda: log.unread(read) == 0, timeout=READ_TIMEOUT, interval=0.1,
             message="the read marker of the room read, in alice's log")
        assert log.unread(other) == 1
    assert alice.running
