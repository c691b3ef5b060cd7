"""A room of real processes to hurt: one server and several agents, each of which can be killed
(-9), restarted with its state, frozen (SIGSTOP) and resumed (SIGCONT), always by pid.

The server's first start picks a free port (`--port 0`); every restart reuses that port number,
so the agents' configured URL stays right. Agents keep their data dir across restarts, and
everything runs on loopback (ICE and rendezvous pinned to 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from launcher import LOOPBACK_RECONNECT_MAX, AgentProcess, ServerProcess, start_all, stop_all
from launcher.server import OPEN_LIMITS
from tests.helpers import poll
from tests.signaling.conftest import unique_name

PASSWORD = "fault-password-123"
# Every agent signs in from 127.0.0.1 and restarts often; the server's sign-in limits are for
# strangers, not for this room.
SERVER_ENV = OPEN_LIMITS


class Server(ServerProcess):
    """`python -m signaling` with the room's open limits, on a port chosen once and kept across
    restarts (the launcher's ServerProcess)."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(workdir, env={**SERVER_ENV, **(extra_env or {})})
        self.database = workdir / "server.sqlite3"


class Agent(AgentProcess):
    """One user's agent across restarts: its name and data dir stay, its process changes. The
    first start registers the user; `server_url` is another way to the server (a proxy).
    `rooms` are joined besides `room` (one agent holds every room of its user)."""

    def __init__(self, name: str, data_dir: Path, server: Server, room: str,
                 server_url: str | None = None,
                 reconnect_max: float | None = LOOPBACK_RECONNECT_MAX,
                 rooms: tuple[str, ...] = ()) -> None:
        super().__init__(server_url or server, name, room, data_dir, PASSWORD,
                         reconnect_max=reconnect_max, rooms=rooms)

    def log_keys(self, room: str | None = None) -> list[tuple[int, str, int]]:
        """A room's whole local log as (lamport, device, seq), in the order the agent shows it."""
        return [(m["lamport"], m["device"], m["seq"]) for m in self.messages(room)]

    def stored(self) -> int:
        """How many messages the agent's local log holds, read straight from its SQLite file
        (read-only; cheap enough to poll while the agent works)."""
        uri = f"file:{self.data_dir / 'log.sqlite3'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            row = db.execute("SELECT count(*) FROM messages WHERE room = ?",
                             (self.room,)).fetchone()
        return int(row[0])

    def connected_peers(self) -> int:
        return len(self.linked_users())

    def log_text(self) -> str:
        return self.log()


class RoomAgents:
    """Makes agents in one room (`agents("alice")`, or several started side by side with
    `agents.several("alice", "bob")`); `stop()` stops every one by pid."""

    def __init__(self, workdir: Path, server: Server, room: str) -> None:
        self.workdir, self.server, self.room = workdir, server, room
        self.made: list[Agent] = []

    def __call__(self, prefix: str) -> Agent:
        return self.several(prefix)[0]

    def several(self, *prefixes: str) -> list[Agent]:
        agents = [Agent(unique_name(p), self.workdir / p, self.server, self.room)
                  for p in prefixes]
        self.made += agents
        start_all(agents)
        return agents

    def stop(self) -> None:
        stop_all(self.made)


class Reader:
    """Reads the server's log of a room over its history API, as a signed-in user."""

    def __init__(self, server: Server, room: str, username: str,
                 password: str = PASSWORD) -> None:
        self.server, self.room, self.username, self.password = server, room, username, password
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            reply = requests.post(self.server.url + "/api/login", timeout=10, json={
                "username": self.username, "password": self.password})
            reply.raise_for_status()
            self._token = reply.json()["token"]
        return {"Authorization": f"Bearer {self._token}"}

    def messages(self) -> list[dict[str, Any]]:
        """Every message the server stored in the room, in display order."""
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            reply = requests.get(
                f"{self.server.url}/api/rooms/{self.room}/messages", headers=self._headers(),
                params={"after": str(after), "limit": "500"}, timeout=10)
            reply.raise_for_status()
            page = reply.json()
            rows += page["messages"]
            if page["next"] is None or not page["messages"]:
                break
            after = page["messages"][-1]["cursor"]
        return sorted(rows, key=lambda m: (m["lamport"], m["device"], m["seq"]))

    def log_keys(self) -> list[tuple[int, str, int]]:
        """The server's log as (lamport, device, seq), in display order."""
        return [(m["lamport"], m["device"], m["seq"]) for m in self.messages()]


def holds(predicate: Callable[[], object], duration: float, interval: float = 0.2,
          message: str = "condition") -> None:
    """Check that `predicate()` stays true for `duration` seconds (polled), failing at once
    when it does not: for what must not happen, as `poll` is for what must."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), f"{message} stopped holding"
        time.sleep(interval)


def wait_mesh(agents: list[Agent], timeout: float = 60) -> None:
    """Poll until every agent has an open data channel to every other (in each of its rooms)."""
    want = len(agents) - 1
    for agent in agents:
        for room in (agent.room, *agent.rooms):
            poll(lambda agent=agent, room=room: sum(
                p["state"] == "connected" for p in agent.state(room)["peers"]) >= want,
                timeout=timeout, interval=0.2,
                message=f"{agent.name} linked to {want} peers in #{room}")


def wait_joined(agents: list[Agent], timeout: float = 60) -> None:
    """Poll until every agent is connected to the server."""
    for agent in agents:
        poll(lambda agent=agent: agent.state()["server"]["connected"], timeout=timeout,
             interval=0.2, message=f"{agent.name} joined the server")
