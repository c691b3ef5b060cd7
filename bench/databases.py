"""What the server benchmarks share: a fresh database of either kind, its version, a scratch
folder, server processes deployed on a fresh database for each layout, and the CPU time a
process has used."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from signaling.config import normalize_database_url
from tests.signaling.deployment import Deployment, deploy
from tests.signaling.services import temporary_database


@contextlib.contextmanager
def workspace(name: str) -> Iterator[Path]:
    """A scratch folder, removed afterwards (big SQLite files live there)."""
    with tempfile.TemporaryDirectory(prefix=f"gibberish-{name}-") as path:
        yield Path(path)


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database: a SQLite file in `workdir`, or a PostgreSQL database with a random
    name on the machine's server, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.sqlite3'}"
    elif backend == "postgresql":
        with temporary_database("gibberish_bench") as url:
            yield url
    else:
        raise SystemExit(f"unknown backend {backend!r}: use sqlite or postgresql")


class Deployer(Protocol):
    """Where a server benchmark gets the server processes of one layout: `count` processes
    from the Procfile on a database of `backend`, sharing Redis at `redis_url` if given, with
    `env` set on each."""

    def __call__(self, backend: str, count: int = 1, redis_url: str | None = None,
                 env: dict[str, str] | None = None,
                 ) -> contextlib.AbstractContextManager[Deployment]: ...


class FreshDeployments:
    """A fresh database and a fresh deployment for each layout, both removed after it: what
    the benchmarks measure on, so that no figure carries what an earlier layout left."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.made = 0

    @contextlib.contextmanager
    def __call__(self, backend: str, count: int = 1, redis_url: str | None = None,
                 env: dict[str, str] | None = None) -> Iterator[Deployment]:
        self.made += 1
        place = self.workdir / f"layout-{self.made}-{backend}"
        place.mkdir(parents=True)
        with database(backend, place) as url, \
                deploy(place, url, redis_url, count=count, extra_env=env) as deployment:
            yield deployment


def database_version(database_url: str) -> str:
    """"SQLite 3.x.y" or "PostgreSQL n.m", read from the database itself."""
    engine = sa.create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                return "SQLite " + str(conn.execute(sa.text("SELECT sqlite_version()")).scalar())
            full = str(conn.execute(sa.text("SHOW server_version")).scalar())
            return "PostgreSQL " + full.split()[0]
    finally:
        engine.dispose()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time consumed so far by the processes `pids` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no thread count for process {pid}")
