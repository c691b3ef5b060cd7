"""Socket.IO connections: refused without a valid bearer token, closed cleanly at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import socketio
import socketio.exceptions
import websocket
from itsdangerous import URLSafeTimedSerializer

from tests.signaling.conftest import Account, ServerProcess


@pytest.fixture
def client() -> Iterator[socketio.Client]:
    made = socketio.Client(reconnection=False)
    yield made
    made.disconnect()


def refusal(server: ServerProcess, auth: Any = None) -> str:
    """Try to connect with `auth`; expect socketio's ConnectionError and return the reason the
    server gave in its `connect_error` answer."""
    client = socketio.Client(reconnection=False)
    reasons: list[Any] = []
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=10)
    assert not client.connected
    assert len(reasons) == 1
    return str(reasons[0]["message"])


def connect(client: socketio.Client, server: ServerProcess, auth: Any = None,
            headers: dict[str, str] | None = None) -> None:
    client.connect(server.url, auth=auth, headers=headers or {}, transports=["websocket"],
                   wait_timeout=10)


def test_connecting_without_a_token_is_refused(server: ServerProcess) -> None:
    assert refusal(server) == "unauthorized: a valid bearer token is required"


def test_connecting_with_an_empty_auth_object_is_refused(server: ServerProcess) -> None:
    assert refusal(server, {}).startswith("unauthorized")


@pytest.mark.parametrize("token", ["garbage", "", 42, None, "x" * 600])
def test_connecting_with_a_garbage_token_is_refused(server: ServerProcess, token: Any) -> None:
    assert refusal(server, {"token": token}).startswith("unauthorized")


def test_connecting_with_a_token_signed_by_another_secret_is_refused(
    server: ServerProcess, accounts: Callable[[str], Account],
) -> None:
    accounts("victim")  # so that user id 1 exists to be forged
    forged = URLSafeTimedSerializer("not the server's secret", salt="gibberish-api-token").dumps(
        {"u": 1, "e": 0})
    assert refusal(server, {"token": forged}).startswith("unauthorized")


def test_connecting_with_a_valid_token_succeeds(
    server: ServerProcess, client: socketio.Client, accounts: Callable[[str], Account],
) -> None:
    account = accounts("sock")
    connect(client, server, auth={"token": account.token})
    assert client.connected
    reply = client.call("join", {"room": "lobby", "device": account.key.device_id}, timeout=10)
    assert reply["ok"] is True
    assert reply["you"]["user"] == account.username


def test_connecting_with_a_bearer_header_succeeds(
    server: ServerProcess, client: socketio.Client, accounts: Callable[[str], Account],
) -> None:
    account = accounts("header")
    connect(client, server, headers={"Authorization": f"Bearer {account.token}"})
    assert client.connected


def test_server_closes_the_connection_after_the_websocket_close_handshake(
    server: ServerProcess,
) -> None:
    """Werkzeug's server once kept such a socket open, reading it as a keep-alive HTTP
    connection, so every client's disconnect waited for its own close timeout."""
    ws = websocket.create_connection(
        server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
        timeout=5)
    try:
        assert ws.recv().startswith("0{")  # Engine.IO open
        ws.send("1")  # Engine.IO close
        close = ws.recv_frame()
        assert close.opcode == websocket.ABNF.OPCODE_CLOSE
        ws.send_close()
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.recv_frame()
    finally:
        ws.shutdown()
