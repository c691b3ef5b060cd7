"""Several server processes deployed as a PaaS runs them: the Procfile's release line on a
shared PostgreSQL database, then its web line once per process, all sharing Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.signaling.conftest import SHARED_SERVER_LIMITS
from tests.signaling.services import (
    Gunicorn,
    launch_gunicorn,
    run_release,
    stop_gunicorns,
    wait_gunicorn,
)

# Heartbeats every second: a crashed process's presence goes within 3 to 4 seconds.
HEARTBEAT_SECONDS = 1.0


@dataclass
class Deployment:
    """Server processes sharing one database and one Redis (`processes[i].url`)."""

    processes: list[Gunicorn]
    database_url: str
    redis_url: str | None
    env: dict[str, str]

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes]

    def logs(self) -> str:
        return "\n".join(f"--- process {i}:\n{p.log()}" for i, p in enumerate(self.processes))


def deployment_env(workdir: Path, database_url: str, redis_url: str | None,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a PaaS would set on every process: one secret, one database, one Redis with a
    prefix of its own (so that concurrent test runs on the machine's Redis never meet)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_PREFIX": f"test-{secrets.token_hex(6)}",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "INSTANCE_PATH": str(workdir / "instance"),
        "PRESENCE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        **SHARED_SERVER_LIMITS,
    }
    env.pop("REDIS_URL", None)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


@contextlib.contextmanager
def deploy(workdir: Path, database_url: str, redis_url: str | None, count: int = 2,
           extra_env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """Run the release line, then `count` web processes; all stopped when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = deployment_env(workdir, database_url, redis_url, extra_env)
    run_release(env)
    # Launched side by side, then waited for: their start-ups overlap.
    launched = [(launch_gunicorn(env, workdir / f"web-{i}.log"), workdir / f"web-{i}.log")
                for i in range(count)]
    processes: list[Gunicorn] = []
    try:
        processes += [wait_gunicorn(proc, log_path) for proc, log_path in launched]
        yield Deployment(processes, database_url, redis_url, env)
    finally:
        waited = {id(p.proc) for p in processes}
        processes += [Gunicorn(proc, "", log_path) for proc, log_path in launched
                      if id(proc) not in waited]
        stop_gunicorns([p for p in processes if p.proc.poll() is None])
