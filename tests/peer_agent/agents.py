"""Run real peer agents (`python -m peer_agent`) as subprocesses, ICE pinned to 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.helpers import ROOT, poll, read_line_matching, stop_process


@dataclass
class AgentProcess:
    """A running agent; `url` is its UI. Stopped (by pid) with `stop()`."""

    name: str
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    log_path: Path

    def get(self, path: str, **kwargs: Any) -> Any:
        reply = requests.get(self.url + path, timeout=10, **kwargs)
        reply.raise_for_status()
        return reply.json()

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/state")
        return result

    def messages(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/messages", params={"limit": "200"})[
            "messages"]
        return result

    def send(self, text: str) -> dict[str, Any]:
        reply = requests.post(self.url + "/api/messages", json={"text": text}, timeout=10)
        assert reply.status_code == 201, reply.text
        message: dict[str, Any] = reply.json()["message"]
        return message

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages()]

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_agent(server_url: str, name: str, room: str, data_dir: Path,
                password: str = "password-" + "x" * 8, register: bool = True) -> AgentProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIBBERISH_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "peer_agent", "--server", server_url, "--user", name,
            "--room", room, "--data-dir", str(data_dir), "--ui-port", "0",
            "--ice-host", "127.0.0.1"]
    if register:
        args.append("--register")
    log_path = data_dir / "agent.log"
    with open(log_path, "a") as log_file:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=log_file, text=True)
    try:
        line = read_line_matching(proc, "UI on", timeout=60)
    except AssertionError:
        stop_process(proc)
        raise AssertionError(f"agent {name} did not start:\n{log_path.read_text()}") from None
    url = line.strip().rsplit(" ", 1)[-1].rstrip("/")
    return AgentProcess(name, proc, url, data_dir, log_path)


def wait_connected(agent: AgentProcess, peers: int, timeout: float = 30) -> None:
    """Poll until `agent` has a connected data channel to `peers` peers and the server."""
    def ready() -> bool:
        state = agent.state()
        up = [p for p in state["peers"] if p["state"] == "connected"]
        return bool(state["server"]["connected"]) and len(up) >= peers
    poll(ready, timeout=timeout, message=f"{agent.name} connected to {peers} peers")
