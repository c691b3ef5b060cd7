"""A room on the routed network (routed_network.py): the server on the hub's address and each
agent on a host of its own, all real processes stopped by pid.

An agent's UI listens on its host's 127.0.0.1, so the test reaches it from inside that host
(`Host.inside()`); its ICE and rendezvous use the host's one address, as on a real machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher import AgentProcess, ServerProcess
from tests.faults.cluster import PASSWORD, SERVER_ENV
from tests.faults.routed_network import SERVER_ADDRESS, Host
from tests.helpers import poll


class HubServer(ServerProcess):
    """`python -m signaling` on the hub's address, where every host can reach it."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, env=SERVER_ENV, host=SERVER_ADDRESS, ready_timeout=90)


class HostedAgent(AgentProcess):
    """A `python -m peer_agent` on a host of its own: started in the host's namespace, its UI
    (on the host's 127.0.0.1) reached from inside it, ICE and rendezvous on the host's one
    address."""

    def __init__(self, host: Host, server: HubServer, name: str, room: str, data_dir: Path,
                 sync_interval: float) -> None:
        super().__init__(server, name, room, data_dir, PASSWORD, ice_host=None,
                         rendezvous_host=host.address, sync_interval=sync_interval,
                         ready_timeout=90)
        self.host = host

    def command(self) -> list[str]:
        return self.host.command(super().command())

    def get(self, path: str, params: dict[str, str] | None = None,
            timeout: float = 10.0) -> Any:
        with self.host.inside():
            return super().get(path, params, timeout)

    def send(self, text: str, timeout: float = 10.0) -> dict[str, Any]:
        with self.host.inside():
            return super().send(text, timeout)

    def path(self, message_id: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.get(f"/api/messages/{message_id}/path")["steps"]
        return steps

    def link_state(self, user: str) -> str | None:
        return next((p["state"] for p in self.state()["peers"] if p["user"] == user), None)


def start_hosted_agent(host: Host, server: HubServer, name: str, room: str, data_dir: Path,
                       sync_interval: float = 1.0) -> HostedAgent:
    """Start an agent on `host` (registering its user) and wait for its UI."""
    agent = HostedAgent(host, server, name, room, data_dir, sync_interval)
    agent.start()
    return agent


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
