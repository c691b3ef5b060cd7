"""Who is in the demos and how their processes are made: a server whose secret key lives in the
data dir (made once, mode 0600), and one agent per user, each with its data dir and log there."""

from __future__ import annotations

import secrets
from pathlib import Path

from launcher import LOOPBACK_RECONNECT_MAX, AgentProcess, ServerProcess

USERS = ("alice", "bob", "carol")


def password_of(user: str) -> str:
    return f"{user}-demo-password"


def secret_key(data: Path) -> str:
    """The server's secret key, kept in `data` so a second run's sessions stay valid."""
    secret_file = data / "secret_key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    return secret_file.read_text().strip()


def server_for(data: Path, port: int, database_url: str | None) -> ServerProcess:
    """The demo's server: its database in `data/server.sqlite3` unless `database_url` says
    otherwise, its log in `data/server.log`."""
    return ServerProcess(data, database_url=database_url, secret=secret_key(data), port=port,
                         instance_path=data / "server")


def agent_for(server: ServerProcess, data: Path, user: str, room: str, *,
              device: str | None = None, ice_host: str | None = "127.0.0.1") -> AgentProcess:
    """`user`'s agent with its data in `data/<device>` and its log in `data/<device>.log`; the
    first device registers the account, another (`device` given) signs in to it. Restarts keep
    its ports, so an open page reconnects; the server is on this machine, so the agent retries
    it at least every LOOPBACK_RECONNECT_MAX seconds while it is down."""
    name = device or user
    return AgentProcess(server, user, room, data / name, password_of(user), name=name,
                        register=device is None, ice_host=ice_host, keep_ports=True,
                        reconnect_max=LOOPBACK_RECONNECT_MAX, log_path=data / f"{name}.log")
