"""The real processes of a browser test, started inside the sealed network: the server (which
can be killed and restarted on the same port and database) and peer agents.

Agents here run without `--ice-host`: in the sealed namespace they gather its veth address
like any browser, which is what lets Chromium and aiortc connect with no tricks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.helpers import ROOT, poll, read_line_matching, stop_process

PASSWORD = "correct horse battery staple"

# Every test signs in from 127.0.0.1, so the per-address limits are raised; the limits
# themselves are tested in tests/signaling.
SERVER_LIMITS = {
    "RATELIMIT_REGISTER": "100000 per minute",
    "RATELIMIT_LOGIN": "100000 per minute",
    "RATELIMIT_LOGIN_ADDRESS": "100000 per minute",
    "RATELIMIT_JOIN": "100000 per minute",
}


@dataclass
class Server:
    """`python -m signaling` on 127.0.0.1. `kill()` ends it by pid; `start()` again brings it
    back on the same port, database and secret (tokens and sessions stay valid)."""

    workdir: Path
    port: int = 0
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.workdir / 'server.sqlite3'}",
            "SECRET_KEY": self.secret,
            "INSTANCE_PATH": str(self.workdir / "instance"),
            "PYTHONUNBUFFERED": "1",
            **SERVER_LIMITS,
        }
        env.pop("REDIS_URL", None)
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        try:
            line = read_line_matching(self.proc, "listening on", timeout=90)
        except AssertionError:
            self.kill()
            raise AssertionError("server did not start:\n" + self.log()) from None
        self.port = int(line.strip().rstrip("/").rsplit(":", 1)[-1])
        return self

    def kill(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def register(self, name: str, password: str = PASSWORD) -> str:
        """Create an account through the JSON API; returns its bearer token."""
        reply = requests.post(f"{self.url}/api/register",
                              json={"username": name, "password": password}, timeout=30)
        assert reply.status_code == 201, reply.text
        token: str = reply.json()["token"]
        return token

    def login(self, name: str, password: str = PASSWORD) -> str:
        """Sign in through the JSON API; returns a bearer token."""
        reply = requests.post(f"{self.url}/api/login",
                              json={"username": name, "password": password}, timeout=30)
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token

    def api(self, token: str, path: str) -> Any:
        reply = requests.get(self.url + path, headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()


@dataclass
class Agent:
    """A running `python -m peer_agent`; `url` is its chat UI."""

    name: str
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path

    def get(self, path: str, **kwargs: Any) -> Any:
        reply = requests.get(self.url + path, timeout=30, **kwargs)
        reply.raise_for_status()
        return reply.json()

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.get("/api/state")
        return state

    def texts(self) -> list[str]:
        page = self.get("/api/messages", params={"limit": "200"})
        return [m["text"] for m in page["messages"]]

    def send(self, text: str) -> dict[str, Any]:
        reply = requests.post(self.url + "/api/messages", json={"text": text}, timeout=30)
        assert reply.status_code == 201, reply.text
        message: dict[str, Any] = reply.json()["message"]
        return message

    def connected_to(self, users: set[str]) -> bool:
        state = self.state()
        up = {p["user"] for p in state["peers"] if p["state"] == "connected"}
        return bool(state["server"]["connected"]) and users <= up

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        path = self.data_dir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_agent(server: Server, name: str, room: str, data_dir: Path,
                password: str = PASSWORD, ui_port: int = 0) -> Agent:
    """Start an agent (registering its user if the name is free) and wait for its UI (on
    `ui_port`, or a free port)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIBBERISH_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "peer_agent", "--server", server.url, "--user", name,
            "--room", room, "--data-dir", str(data_dir), "--ui-port", str(ui_port), "--register"]
    with open(data_dir / "agent.log", "a") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                                text=True)
    try:
        line = read_line_matching(proc, "UI on", timeout=90)
    except AssertionError:
        stop_process(proc)
        raise AssertionError(f"agent {name} did not start:\n"
                             + (data_dir / "agent.log").read_text()) from None
    return Agent(name, proc, line.strip().rsplit(" ", 1)[-1].rstrip("/"), data_dir)


def wait_agents_linked(agents: list[Agent], users: set[str], timeout: float = 60) -> None:
    """Poll until every agent has an open channel to every one of `users` but itself."""
    for agent in agents:
        others = users - {agent.name}
        poll(lambda: agent.connected_to(others), timeout=timeout,  # noqa: B023 (polled now)
             message=f"{agent.name} linked to {sorted(others)}")
