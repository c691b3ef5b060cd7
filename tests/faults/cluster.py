"""A room of real processes to hurt: one server and several agents, each of which can be killed
(-9), restarted with its state, frozen (SIGSTOP) and resumed (SIGCONT), always by pid.

The server's first start picks a free port (`--port 0`); every restart reuses that port number,
so the agents' configured URL stays right. Agents keep their data dir across restarts, and
everything runs on loopback (ICE and rendezvous pinned to 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.helpers import ROOT, poll, read_line_matching, stop_process
from tests.peer_agent.agents import AgentProcess, start_agent

PASSWORD = "fault-password-123"
# Every agent signs in from 127.0.0.1 and restarts often; the server's sign-in limits are for
# strangers, not for this room.
SERVER_ENV = {
    "RATELIMIT_REGISTER": "100000 per minute",
    "RATELIMIT_LOGIN": "100000 per minute",
    "RATELIMIT_LOGIN_ADDRESS": "100000 per minute",
    "RATELIMIT_JOIN": "100000 per minute",
}


class Server:
    """`python -m signaling` in a subprocess, on a port chosen once and kept across restarts."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.database = workdir / "server.sqlite3"
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.frozen = False
        self.starts = 0
        self._env = {
            **os.environ, "DATABASE_URL": f"sqlite:///{self.database}",
            "SECRET_KEY": secrets.token_urlsafe(32), "INSTANCE_PATH": str(workdir / "instance"),
            "PYTHONUNBUFFERED": "1", **SERVER_ENV, **(extra_env or {}),
        }
        self._env.pop("REDIS_URL", None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.frozen

    def start(self, timeout: float = 60) -> None:
        """Start (or restart) the server; a restart waits until the old port is free again."""
        assert self.proc is None or self.proc.poll() is not None, "the server is running"
        deadline = time.monotonic() + timeout
        while True:
            log = open(self.workdir / "server.log", "a")  # noqa: SIM115 (the child owns it)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=ROOT, env=self._env, stdout=subprocess.PIPE, stderr=log, text=True)
            log.close()
            try:
                line = read_line_matching(self.proc, "listening on",
                                          timeout=max(1.0, deadline - time.monotonic()))
                break
            except AssertionError:
                stop_process(self.proc)
                if time.monotonic() > deadline:
                    raise AssertionError("server did not start:\n" + self.log()[-3000:]) from None
                time.sleep(0.5)  # the port may still be held by the killed process's sockets
        self.port = int(line.strip().rstrip("/").rsplit(":", 1)[-1])
        self.frozen = False
        self.starts += 1

    def kill(self) -> None:
        """kill -9, as a crash: no goodbye to anyone."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_pipe()
        self.frozen = False

    def freeze(self) -> None:
        assert self.proc is not None and not self.frozen
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.proc is not None and self.frozen
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.proc is not None:
            if self.frozen:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.frozen = False
            stop_process(self.proc)

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")


@dataclass
class Agent:
    """One user's agent across restarts: its name and data dir stay, its process changes."""

    name: str
    data_dir: Path
    server: Server
    room: str
    process: AgentProcess | None = None
    frozen: bool = False
    starts: int = 0
    server_url: str | None = None  # another way to the server (a proxy), if not direct

    @property
    def up(self) -> bool:
        return (self.process is not None and self.process.proc.poll() is None
                and not self.frozen)

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    def start(self) -> None:
        """Start (first time: register the user) or restart with the same data dir."""
        assert self.process is None or self.process.proc.poll() is not None
        self.process = start_agent(self.server_url or self.server.url, self.name, self.room,
                                   self.data_dir, password=PASSWORD, register=self.starts == 0)
        self.frozen = False
        self.starts += 1

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.proc.pid, signal.SIGKILL)
        self.process.proc.wait(timeout=30)
        for stream in (self.process.proc.stdout, self.process.proc.stderr):
            if stream is not None:
                stream.close()
        self.frozen = False

    def freeze(self) -> None:
        assert self.process is not None and not self.frozen
        os.kill(self.process.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None and self.frozen
        os.kill(self.process.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is not None:
            if self.frozen:
                os.kill(self.process.proc.pid, signal.SIGCONT)
                self.frozen = False
            self.process.stop()

    def state(self) -> dict[str, Any]:
        assert self.process is not None
        return self.process.state()

    def send(self, text: str, timeout: float = 10) -> dict[str, Any]:
        """Post a message; the reply is the acknowledgement (stored in the local log)."""
        reply = requests.post(self.url + "/api/messages", json={"text": text}, timeout=timeout)
        assert reply.status_code == 201, reply.text
        message: dict[str, Any] = reply.json()["message"]
        return message

    def log_keys(self) -> list[tuple[int, str, int]]:
        """The whole local log as (lamport, device, seq), in the order the agent shows it."""
        return [(m["lamport"], m["device"], m["seq"]) for m in self.messages()]

    def messages(self) -> list[dict[str, Any]]:
        """The whole local log in display order, paged through the UI API."""
        pages: list[list[dict[str, Any]]] = []
        before: str | None = None
        while True:
            params = {"limit": "200", **({"before": before} if before else {})}
            reply = requests.get(self.url + "/api/messages", params=params, timeout=10)
            reply.raise_for_status()
            page = reply.json()
            pages.append(page["messages"])
            before = page["older"]
            if before is None:
                break
        return [m for page in reversed(pages) for m in page]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages()]

    def stored(self) -> int:
        """How many messages the agent's local log holds, read straight from its SQLite file
        (read-only; cheap enough to poll while the agent works)."""
        uri = f"file:{self.data_dir / 'log.sqlite3'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            row = db.execute("SELECT count(*) FROM messages WHERE room = ?",
                             (self.room,)).fetchone()
        return int(row[0])

    def connected_peers(self) -> int:
        return sum(1 for p in self.state()["peers"] if p["state"] == "connected")

    def log_text(self) -> str:
        return (self.data_dir / "agent.log").read_text(errors="replace")


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
    """Poll until every agent has an open data channel to every other."""
    want = len(agents) - 1
    for agent in agents:
        poll(lambda agent=agent: agent.connected_peers() >= want, timeout=timeout,
             interval=0.2, message=f"{agent.name} linked to {want} peers")


def wait_joined(agents: list[Agent], timeout: float = 60) -> None:
    """Poll until every agent is connected to the server."""
    for agent in agents:
        poll(lambda agent=agent: agent.state()["server"]["connected"], timeout=timeout,
             interval=0.2, message=f"{agent.name} joined the server")
