"""Fixtures that run the real server (`python -m signaling`) in a subprocess on a free port,
with a fresh database, and drive it with real HTTP and python-socketio clients.

The suite runs twice, once per database (the `backend` fixture): on a SQLite file, and on a
PostgreSQL database made for the run with a random name and dropped afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio
import sqlalchemy as sa

from launcher import ServerProcess as ServerProcess  # re-exported: the tests name it from here
from protocol import DeviceKey, Envelope
from signaling.config import normalize_database_url
from tests.helpers import poll
from tests.signaling.services import require_postgres, temporary_database

BACKENDS = ("sqlite", "postgresql")

PASSWORD = "correct horse battery staple"
SHARED_SERVER_LIMITS = {
    "RATELIMIT_REGISTER": "100000 per minute",
    "RATELIMIT_LOGIN": "100000 per minute",
    "RATELIMIT_LOGIN_ADDRESS": "100000 per minute",
}


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database the server under test uses: "sqlite" or "postgresql"."""
    name: str = request.param
    if name == "postgresql":
        require_postgres()
    return name


@contextlib.contextmanager
def database_for(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database of `backend`: a SQLite file in `workdir`, or a PostgreSQL database
    with a random name, dropped when the block ends."""
    if backend == "sqlite":
        workdir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{workdir / 'server.sqlite3'}"
    else:
        with temporary_database() as url:
            yield url


def start_server(workdir: Path, extra_env: dict[str, str] | None = None,
                 database_url: str | None = None) -> ServerProcess:
    """Start `python -m signaling` on a free port; a SQLite file in `workdir` unless
    `database_url` names another database."""
    running = ServerProcess(workdir, env=extra_env, database_url=database_url)
    running.start()
    return running


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per database for the tests that need no special settings (each uses its
    own names).

    Sign-in limits count per address, and every test signs in from 127.0.0.1, so they are
    raised here; test_limits.py checks the limits on a server of its own."""
    workdir = tmp_path_factory.mktemp(f"server-{backend}")
    with database_for(backend, workdir) as url:
        running = start_server(workdir, SHARED_SERVER_LIMITS, database_url=url)
        yield running
        running.stop()


@dataclass
class Account:
    """A registered user with a bearer token and one registered device key."""

    username: str
    token: str
    key: DeviceKey
    server_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.server_url + path, headers=self.headers, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.server_url + path, headers=self.headers, timeout=10, **kwargs)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def register_account(url: str, prefix: str = "user") -> Account:
    name = unique_name(prefix)
    reply = requests.post(f"{url}/api/register", json={"username": name, "password": PASSWORD},
                          timeout=10)
    assert reply.status_code == 201, reply.text
    key = DeviceKey.generate()
    account = Account(name, reply.json()["token"], key, url)
    added = account.post("/api/devices", json={"public_key": key.public_key_b64})
    assert added.status_code == 201, added.text
    return account


@dataclass
class Peer:
    """A real python-socketio client signed in as `account`, recording the events it gets."""

    account: Account
    client: socketio.Client
    events: list[tuple[str, Any]] = field(default_factory=list)

    def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        return self.client.call(event, data, timeout=timeout)

    def join(self, room: str, rendezvous: str | None = None) -> Any:
        data: dict[str, Any] = {"room": room, "device": self.account.key.device_id}
        if rendezvous is not None:
            data["rendezvous"] = rendezvous
        return self.call("join", data)

    def received(self, event: str) -> list[Any]:
        return [data for name, data in list(self.events) if name == event]

    def wait_for(self, event: str, predicate: Callable[[Any], bool] = lambda _: True,
                 timeout: float = 10) -> Any:
        return poll(lambda: next((d for d in self.received(event) if predicate(d)), None),
                    timeout=timeout, message=f"{event} at {self.account.username}")


def connect_peer(account: Account) -> Peer:
    client = socketio.Client(reconnection=False)
    peer = Peer(account, client)
    for name in ("peer_joined", "peer_left", "signal", "stored", "members", "removed"):
        client.on(name, lambda data, name=name: peer.events.append((name, data)))
    client.connect(account.server_url, auth={"token": account.token}, transports=["websocket"],
                   wait_timeout=10)
    return peer


@pytest.fixture
def accounts(server: ServerProcess) -> Callable[[str], Account]:
    return lambda prefix="user": register_account(server.url, prefix)


@pytest.fixture
def peers() -> Iterator[Callable[[Account], Peer]]:
    """Connect peers; every one is disconnected when the test ends."""
    made: list[Peer] = []

    def make(account: Account) -> Peer:
        peer = connect_peer(account)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.client.disconnect()


def drop_peer(peer: Peer) -> None:
    """Cut a peer's connection without a goodbye, as when its network vanishes: the socket
    is shut down under the client, so the server sees the connection die, not a disconnect."""
    sock = getattr(getattr(peer.client.eio, "ws", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    peer.client.disconnect()


def signed_envelope(account: Account, room: str, seq: int, *, lamport: int | None = None,
                    text: str | None = None, key: DeviceKey | None = None,
                    author: str | None = None) -> dict[str, Any]:
    """The wire form of an envelope signed by `key` (the account's device key by default),
    authored by the account unless `author` says otherwise; lamport defaults to seq."""
    return Envelope.create(
        key or account.key, room=room, author=author or account.username, seq=seq,
        lamport=seq if lamport is None else lamport, ts=1_700_000_000_000 + seq,
        text=f"message {seq}" if text is None else text,
    ).to_dict()


def database_engine(database_url: str) -> sa.Engine:
    """An engine on the server's database that keeps no connection open between uses."""
    return sa.create_engine(normalize_database_url(database_url), poolclass=sa.NullPool)


def stored_count(server: ServerProcess, room: str) -> int:
    """How many rows the server's database holds for `room`, read straight from it."""
    return count_stored(server.database_url, room)


def count_stored(database_url: str, room: str) -> int:
    """How many rows the database at `database_url` holds for `room`."""
    engine = database_engine(database_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.text(
                "SELECT count(*) FROM messages JOIN rooms ON rooms.id = messages.room_id"
                " WHERE rooms.name = :room"), {"room": room}).scalar_one()
    finally:
        engine.dispose()
    return int(count)


@pytest.fixture
def clients() -> Iterator[Callable[[Account, str], Peer]]:
    """Connect an account's peer to a given server process; all disconnected at the end."""
    made: list[Peer] = []

    def make(account: Account, url: str) -> Peer:
        peer = connect_peer(dataclasses.replace(account, server_url=url))
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.client.disconnect()
