"""The hostile-input suite: one real server for the package (each module has a room of its
own), a room with legitimate messages in it, and the checks every hostile input ends with.

After each input a test asserts the clear error it got, then `Witness.check()`: the process still
answers, its log (since the test began) holds no traceback, and the room's legitimate messages
are all there, exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from peer_agent.ice import pin_ice_hosts
from tests.signaling.conftest import (
    SHARED_SERVER_LIMITS,
    Account,
    Peer,
    ServerProcess,
    connect_peer,
    register_account,
    signed_envelope,
    start_server,
    unique_name,
)

LEGITIMATE = 3
"""Messages in the witness room before any hostile input."""


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    """Pin ICE to 127.0.0.1 (no packet leaves loopback), and restore aioice afterwards."""
    pin_ice_hosts(["127.0.0.1"])
    yield
    pin_ice_hosts(None)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The suite's server (SQLite), with sign-in limits raised: every input comes from
    127.0.0.1. Each test reads only what the log gained while it ran."""
    running = start_server(tmp_path_factory.mktemp("hostile-server"), SHARED_SERVER_LIMITS)
    yield running
    running.stop()


@dataclass
class Witness:
    """A member of a room holding LEGITIMATE messages, and the server's log position."""

    server: ServerProcess
    account: Account
    peer: Peer
    room: str
    ids: list[str]
    log_start: int = field(default=0)

    def new_log(self) -> str:
        """What the server logged since the witness was made (or last checked)."""
        with open(self.server.log_path, errors="replace") as log:
            log.seek(self.log_start)
            return log.read()

    def check(self) -> None:
        """The server answers, logged no traceback, and holds each legitimate message once."""
        health = requests.get(self.server.url + "/healthz", timeout=10)
        assert health.status_code == 200, health.text
        logged = self.new_log()
        assert "Traceback" not in logged, logged[-3000:]
        reply = self.account.get(f"/api/rooms/{self.room}/messages", params={"limit": "500"})
        assert reply.status_code == 200, reply.text
        ids = [m["id"] for m in reply.json()["messages"]]
        for message_id in self.ids:
            assert ids.count(message_id) == 1, (message_id, ids)


@pytest.fixture(scope="module")
def room_witness(server: ServerProcess) -> Iterator[Witness]:
    """A room on the module's server with LEGITIMATE messages stored by its member."""
    account = register_account(server.url, "witness")
    peer = connect_peer(account)
    room = unique_name("room")
    assert peer.join(room)["ok"]
    envelopes = [signed_envelope(account, room, seq) for seq in range(1, LEGITIMATE + 1)]
    results = peer.call("publish", {"envelopes": envelopes})["results"]
    assert all(r["ok"] for r in results), results
    yield Witness(server, account, peer, room, [r["id"] for r in results])
    peer.client.disconnect()


@pytest.fixture
def witness(room_witness: Witness) -> Iterator[Witness]:
    """The module's witness room, its log position set at the start of the test; checked
    again when the test ends."""
    room_witness.log_start = room_witness.server.log_path.stat().st_size
    yield room_witness
    room_witness.check()


def json_error(reply: requests.Response) -> dict[str, Any]:
    """The `{"code", "message"}` of a JSON error reply."""
    body = reply.json()
    assert isinstance(body, dict) and "error" in body, reply.text
    error: dict[str, Any] = body["error"]
    assert error["message"], error
    return error

