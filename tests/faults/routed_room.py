"""A room on the routed network (routed_network.py): the server on the hub's address and each
agent on a host of its own, all real processes stopped by pid.

An agent's UI listens on its host's 127.0.0.1, so the test reaches it from inside that host
(`Host.inside()`); its ICE and rendezvous use the host's one address, as on a real machine."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.faults.cluster import PASSWORD, SERVER_ENV
from tests.faults.routed_network import SERVER_ADDRESS, Host
from tests.helpers import ROOT, poll, read_line_matching, stop_process


@dataclass
class HubServer:
    """`python -m signaling` on the hub's address, where every host can reach it."""

    workdir: Path
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self) -> HubServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{self.workdir / 'server.sqlite3'}",
               "SECRET_KEY": secrets.token_urlsafe(32),
               "INSTANCE_PATH": str(self.workdir / "instance"), "PYTHONUNBUFFERED": "1",
               **SERVER_ENV}
        env.pop("REDIS_URL", None)
        with open(self.workdir / "server.log", "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling", "--host", SERVER_ADDRESS, "--port", "0"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            line = read_line_matching(self.proc, "listening on", timeout=90)
        except AssertionError:
            self.stop()
            raise AssertionError("server did not start:\n" + self.log()) from None
        self.url = line.strip().rsplit(" ", 1)[-1].rstrip("/")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class HostedAgent:
    """A running `python -m peer_agent` on a host of its own."""

    name: str
    host: Host
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path

    def get(self, path: str, **kwargs: Any) -> Any:
        with self.host.inside():
            reply = requests.get(self.url + path, timeout=10, **kwargs)
        reply.raise_for_status()
        return reply.json()

    def send(self, text: str) -> dict[str, Any]:
        with self.host.inside():
            reply = requests.post(self.url + "/api/messages", json={"text": text}, timeout=10)
        assert reply.status_code == 201, reply.text
        message: dict[str, Any] = reply.json()["message"]
        return message

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.get("/api/state")
        return state

    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.get("/api/messages",
                                                  params={"limit": "500"})["messages"]
        return messages

    def path(self, message_id: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.get(f"/api/messages/{message_id}/path")["steps"]
        return steps

    def link_state(self, user: str) -> str | None:
        return next((p["state"] for p in self.state()["peers"] if p["user"] == user), None)

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        path = self.data_dir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_hosted_agent(host: Host, server: HubServer, name: str, room: str, data_dir: Path,
                       sync_interval: float = 1.0) -> HostedAgent:
    """Start an agent on `host` (registering its user) and wait for its UI."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIBBERISH_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "peer_agent", "--server", server.url, "--user", name,
            "--room", room, "--data-dir", str(data_dir), "--ui-port", "0", "--register",
            "--rendezvous-host", host.address, "--sync-interval", str(sync_interval)]
    with open(data_dir / "agent.log", "a") as log:
        proc = subprocess.Popen(host.command(argv), cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = read_line_matching(proc, "UI on", timeout=90)
    except AssertionError:
        stop_process(proc)
        raise AssertionError(f"agent {name} did not start:\n"
                             + (data_dir / "agent.log").read_text()) from None
    return HostedAgent(name, host, proc, line.strip().rsplit(" ", 1)[-1].rstrip("/"), data_dir)


def wait_state(agent: HostedAgent, server_up: bool, linked: set[str], listed: set[str],
               timeout: float = 60) -> None:
    """Poll until the agent's server link is as given, it has an open channel to each of
    `linked`, and lists `listed` among its peers."""
    def ready() -> bool:
        state = agent.state()
        peers = {p["user"]: p["state"] for p in state["peers"]}
        return (state["server"]["connected"] is server_up
                and all(peers.get(user) == "connected" for user in linked)
                and listed <= peers.keys())
    poll(ready, timeout=timeout, interval=0.1,
         message=f"{agent.name}: server {'up' if server_up else 'down'}, linked to "
                 f"{sorted(linked)}, listing {sorted(listed)}")
