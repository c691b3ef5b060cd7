"""The real processes of a browser test, started inside the sealed network: the server (which
can be killed and restarted on the same port and database) and peer agents.

Agents here run without `--ice-host`: in the sealed namespace they gather its veth address
like any browser, which is what lets Chromium and aiortc connect with no tricks."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import socketio

from launcher import LOOPBACK_RECONNECT_MAX, AgentProcess, ServerProcess
from launcher.server import OPEN_LIMITS
from protocol.keys import DeviceKey
from tests.helpers import poll

PASSWORD = "correct horse battery staple"

# Every test signs in from 127.0.0.1, so the per-address limits are raised; the limits
# themselves are tested in tests/signaling.
SERVER_LIMITS = OPEN_LIMITS


class Server(ServerProcess):
    """`python -m signaling` on 127.0.0.1 (the launcher's ServerProcess). `stop()` ends it by
    pid; `start()` again brings it back on the same port, database and secret (tokens and
    sessions stay valid)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, env=SERVER_LIMITS, ready_timeout=90)

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


class Agent(AgentProcess):
    """A running `python -m peer_agent` (the launcher's AgentProcess); `url` is its chat UI."""

    def connected_to(self, users: set[str]) -> bool:
        state = self.state()
        up = {p["user"] for p in state["peers"] if p["state"] == "connected"}
        return bool(state["server"]["connected"]) and users <= up


def start_agent(server: Server, name: str, room: str, data_dir: Path,
                password: str = PASSWORD, ui_port: int = 0) -> Agent:
    """Start an agent (registering its user if the name is free) and wait for its UI (on
    `ui_port`, or a free port). No `--ice-host`: in the sealed namespace it gathers the veth
    address like any browser."""
    agent = Agent(server, name, room, data_dir, password, ice_host=None, ui_port=ui_port,
                  keep_ports=True, reconnect_max=LOOPBACK_RECONNECT_MAX, ready_timeout=90)
    agent.start()
    return agent


def wait_agents_linked(agents: list[Agent], users: set[str], timeout: float = 60) -> None:
    """Poll until every agent has an open channel to every one of `users` but itself."""
    for agent in agents:
        others = users - {agent.name}
        poll(lambda: agent.connected_to(others), timeout=timeout,  # noqa: B023 (polled now)
             message=f"{agent.name} linked to {sorted(others)}")


@contextmanager
def member_socket(server: Server, room: str) -> Iterator[tuple[socketio.Client, DeviceKey, str]]:
    """A new member of `room` on a Socket.IO connection of its own, its device registered and
    the room joined: (the connection, the device key, the user), disconnected after."""
    name = f"member-{secrets.token_hex(3)}"
    token = server.register(name)
    key = DeviceKey.generate()
    reply = requests.post(f"{server.url}/api/devices", json={"public_key": key.public_key_b64},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert reply.status_code == 201, reply.text
    client = socketio.Client(reconnection=False)
    client.connect(server.url, auth={"token": token}, transports=["websocket"],
                   wait_timeout=30)
    try:
        assert client.call("join", {"room": room, "device": key.device_id}, timeout=30)["ok"]
        yield client, key, name
    finally:
        client.disconnect()
