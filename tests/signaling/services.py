"""Real services for the server's tests: PostgreSQL databases made and dropped per test run,
Redis (the machine's, or a private `redis-server` a test can stop), a private PostgreSQL
cluster a test can stop, gunicorn started from the Procfile as a PaaS would, and a failover
TCP proxy standing where a PaaS router stands.

A service that is missing skips the tests that need it on a developer's machine, with the
reason, and fails them in CI (tests/helpers.py `in_ci`)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from launcher import track
from tests.helpers import ROOT, in_ci, poll, stop_process

POSTGRES_ADMIN_URL = os.environ.get(
    "GIBBERISH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("GIBBERISH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def missing_service(what: str, detail: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) a test whose service is not there."""
    message = f"{what} is not available ({detail}); `bash .ci/run` starts it on this machine"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for servers that cannot pick one themselves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# PostgreSQL

def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{make_url(POSTGRES_ADMIN_URL).render_as_string()}: {exc}".strip()
    return None


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is not None:
        missing_service("PostgreSQL", problem)


def _admin(statement: str, database: str) -> None:
    """Run `statement` ({} stands for the database name, quoted) outside a transaction."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(database)))  # type: ignore[arg-type]


@contextlib.contextmanager
def temporary_database(prefix: str = "gibberish_test") -> Iterator[str]:
    """A fresh PostgreSQL database with a random name, dropped (with any connection still
    open to it) afterwards. Yields its URL in the `postgres://` spelling a PaaS hands out."""
    require_postgres()
    name = f"{prefix}_{secrets.token_hex(6)}"
    _admin("CREATE DATABASE {}", name)
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(database=name)
        yield "postgres://" + url.render_as_string(hide_password=False).split("://", 1)[1]
    finally:
        _admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


def terminate_connections(database_url: str) -> int:
    """Drop every connection to the database of `database_url` (pg_terminate_backend), as a
    database failover or an administrator would; returns how many were dropped."""
    name = make_url(database_url.replace("postgres://", "postgresql://", 1)).database
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
    return sum(1 for (done,) in rows if done)


def _postgres_bin(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    if not found:
        missing_service("PostgreSQL server programs", f"no {program} under /usr/lib/postgresql")
    return found[-1]


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a free port, which the test may stop and
    start again (the machine's shared server must stay up for everyone else)."""

    root: Path
    port: int
    proc: subprocess.Popen[str] | None = None

    @classmethod
    def create(cls) -> PrivatePostgres:
        if os.geteuid() != 0:
            missing_service("a private PostgreSQL cluster",
                            "it runs as the postgres user, which takes root to start")
        # Under /tmp rather than pytest's tmp_path: the server runs as the postgres user,
        # who cannot enter root's private pytest folders.
        root = Path(tempfile.mkdtemp(prefix="gibberish-pg-"))
        shutil.chown(root, "postgres", "postgres")
        cluster = cls(root, free_port())
        subprocess.run(
            [_postgres_bin("initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, text=True, user="postgres", timeout=120)
        return cluster

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = open(self.root / "server.log", "a")  # noqa: SIM115  (owned by the child)
        with log:
            self.proc = track(subprocess.Popen(
                [_postgres_bin("postgres"), "-D", str(self.root / "data"), "-p", str(self.port),
                 "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                stdout=log, stderr=log, text=True, user="postgres"))

        def ready() -> bool:
            try:
                with psycopg.connect(self.url.replace("postgres://", "postgresql://"),
                                     connect_timeout=2):
                    return True
            except psycopg.Error:
                return False

        poll(ready, timeout=60, interval=0.1, message="the private PostgreSQL to accept")

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open connections are cut, as when the database goes down."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# Redis

def require_redis() -> None:
    try:
        client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        missing_service("Redis", f"{REDIS_TEST_URL}: {exc}")


@dataclass
class PrivateRedis:
    """A `redis-server` of the test's own on a free port, which the test may stop and start
    again on the same port."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_service("redis-server", "not on PATH")
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = track(subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root),
             "--logfile", str(self.root / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))

        def ready() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
            except redis.RedisError:
                return False

        poll(ready, timeout=30, interval=0.05, message="the private Redis to answer")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


# gunicorn from the Procfile

def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if line.strip())}


def run_release(env: dict[str, str]) -> None:
    """The Procfile's `release:` line, through a shell as a PaaS runs it."""
    result = subprocess.run(["bash", "-c", procfile()["release"]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class Gunicorn:
    """The Procfile's `web:` process (gunicorn's arbiter) and its one worker."""

    proc: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def crash(self) -> None:
        """kill -9 the worker and the arbiter at once, as when the machine under them dies."""
        workers = self.worker_pids()
        os.kill(self.proc.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_gunicorns([self])


def stop_gunicorns(processes: list[Gunicorn], timeout: float = 30.0) -> None:
    """Stop several side by side, by pid: SIGTERM to every arbiter at once, then wait for each
    (SIGKILL when the shared deadline passes). Their workers are killed afterwards: a worker
    outliving its arbiter would keep its port."""
    workers = [pid for p in processes for pid in p.worker_pids()]
    for process in processes:
        if process.proc.poll() is None:
            os.kill(process.proc.pid, signal.SIGCONT)
            os.kill(process.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        stop_process(process.proc, timeout=max(0.1, deadline - time.monotonic()))
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_gunicorn(env: dict[str, str], log_path: Path) -> Gunicorn:
    """Run the Procfile's `web:` line through a shell with PORT=0 and wait until gunicorn
    has bound its port and its worker has loaded the app."""
    return wait_gunicorn(launch_gunicorn(env, log_path), log_path)


def launch_gunicorn(env: dict[str, str], log_path: Path) -> subprocess.Popen[str]:
    """Run the Procfile's `web:` line with PORT=0 on loopback (WEB_HOST), without waiting for
    it (`wait_gunicorn`): several launched at once start side by side."""
    env = {**env, "PORT": "0", "WEB_HOST": "127.0.0.1"}
    with open(log_path, "a") as log:
        return track(subprocess.Popen(["bash", "-c", "exec " + procfile()["web"]], cwd=ROOT,
                                      env=env, stdout=log, stderr=log, text=True))


def wait_gunicorn(proc: subprocess.Popen[str], log_path: Path) -> Gunicorn:
    """Wait until the launched gunicorn has bound its port and its worker answers; stop it
    by pid if it does not within a minute."""
    def port() -> int | None:
        if proc.poll() is not None:
            raise AssertionError("gunicorn exited:\n" + log_path.read_text(errors="replace"))
        found = re.search(r"Listening at: http://[0-9.]+:(\d+)", log_path.read_text())
        return int(found.group(1)) if found else None

    try:
        bound = poll(port, timeout=60, interval=0.05, message="gunicorn to listen")
        url = f"http://127.0.0.1:{bound}"
        poll(lambda: _answers(url), timeout=60, interval=0.1, message="gunicorn's worker")
    except AssertionError:
        stop_process(proc)
        raise
    return Gunicorn(proc, url, log_path)


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url + "/healthz", timeout=5).status_code in (200, 503)
    except requests.RequestException:
        return False


# A router in front of several processes

class FailoverProxy:
    """A TCP proxy on 127.0.0.1 that sends each new connection to the first of its backends
    that accepts it, as a PaaS router does once a process has died. Bytes pass unchanged, so
    WebSocket connections work; when a backend dies its connections are closed on both sides."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = [_host_port(url) for url in backends]
        self.routed: list[int] = []  # backend index of each accepted connection
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="failover-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._route, args=(client,), daemon=True).start()

    def _route(self, client: socket.socket) -> None:
        for index, address in enumerate(self.backends):
            try:
                backend = socket.create_connection(address, timeout=5)
            except OSError:
                continue
            backend.settimeout(None)
            with self._lock:
                self.routed.append(index)
                self._open.update((client, backend))
            threading.Thread(target=self._pump, args=(backend, client), daemon=True).start()
            self._pump(client, backend)
            return
        _close(client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update((source, sink))
            _close(source)
            _close(sink)


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
    return host, int(port)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

