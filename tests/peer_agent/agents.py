"""Run real peer agents (`python -m peer_agent`) as subprocesses, ICE pinned to 127.0.0.1,
through the shared launcher."""

from __future__ import annotations

from pathlib import Path

from launcher import LOOPBACK_RECONNECT_MAX, AgentProcess, start_all, stop_all
from tests.helpers import poll

__all__ = ["AgentProcess", "start_agent", "start_agents", "wait_connected"]


def start_agent(server_url: str, name: str, room: str, data_dir: Path,
                password: str = "password-" + "x" * 8, register: bool = True,
                sync_interval: float | None = None) -> AgentProcess:
    """Start `name`'s agent in `room` (registering the account unless `register` is False) and
    wait until it printed its UI address. Its server is on this machine: it retries it at
    least every LOOPBACK_RECONNECT_MAX seconds."""
    agent = AgentProcess(server_url, name, room, data_dir, password, register=register,
                         sync_interval=sync_interval, reconnect_max=LOOPBACK_RECONNECT_MAX)
    agent.start()
    return agent


def start_agents(server_url: str, names: list[str], room: str, base: Path,
                 password: str = "password-" + "x" * 8) -> list[AgentProcess]:
    """Start several agents side by side (each registering its account, its data dir under
    `base`) and wait until each printed its UI address; all are stopped if one fails."""
    agents = [AgentProcess(server_url, name, room, base / name, password,
                           reconnect_max=LOOPBACK_RECONNECT_MAX) for name in names]
    try:
        start_all(agents)
    except BaseException:
        stop_all(agents)
        raise
    return agents


def wait_connected(agent: AgentProcess, peers: int, timeout: float = 30) -> None:
    """Poll until `agent` has a connected data channel to `peers` peers and the server."""
    def ready() -> bool:
        state = agent.state()
        up = [p for p in state["peers"] if p["state"] == "connected"]
        return bool(state["server"]["connected"]) and len(up) >= peers
    poll(ready, timeout=timeout, message=f"{agent.name} connected to {peers} peers")
