"""`python -m signaling` as a child process (see child.py)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from launcher.child import Child

# The sign-in and join limits count per address, and everything the launcher starts signs in
# from 127.0.0.1, often: they are meant for strangers, not for one machine's own room.
OPEN_LIMITS = {
    "RATELIMIT_REGISTER": "100000 per minute",
    "RATELIMIT_LOGIN": "100000 per minute",
    "RATELIMIT_LOGIN_ADDRESS": "100000 per minute",
    "RATELIMIT_JOIN": "100000 per minute",
    "RATELIMIT_JOIN_ROOM": "100000 per minute",
    "RATELIMIT_JOIN_ROOMS": "100000 per minute",
}


class ServerProcess(Child):
    """The signaling server with its database and instance dir under `workdir` (unless told
    otherwise). Port 0 picks a free port at the first start, which every restart reuses (with
    the same database and secret key), so agents' configured URL and tokens stay right."""

    markers = ("listening on",)

    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None,
                 database_url: str | None = None, secret: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, instance_path: Path | None = None,
                 log_path: Path | None = None, ready_timeout: float = 60.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.host, self.port = host, port
        self.database_url = database_url or f"sqlite:///{workdir / 'server.sqlite3'}"
        full_env = {
            **os.environ, "PYTHONUNBUFFERED": "1", "DATABASE_URL": self.database_url,
            "SECRET_KEY": secret or secrets.token_urlsafe(32),
            "INSTANCE_PATH": str(instance_path or workdir / "instance"),
        }
        full_env.pop("REDIS_URL", None)  # only when asked for: a server of its own by default
        full_env.update(env or {})
        super().__init__(log_path or workdir / "server.log", full_env, ready_timeout)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def args(self) -> list[str]:
        return ["-m", "signaling", "--host", self.host, "--port", str(self.port)]

    def started(self, words: list[str]) -> None:
        self.port = int(words[0].rsplit(":", 1)[-1])
