"""The server as it is deployed: migrations on a fresh database, threading mode, the Procfile."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import requests
import socketio
import sqlalchemy as sa

from tests.helpers import ROOT, read_line_matching, stop_process
from tests.signaling.conftest import ServerProcess, register_account

EXPECTED_TABLES = {"users", "devices", "rooms", "memberships", "presence", "messages"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SECRET_KEY": secrets.token_urlsafe(32),
           "INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def _flask_db(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "signaling.wsgi", "db", *args,
         "--directory", "migrations"],
        cwd=ROOT, env=_env(tmp_path, DATABASE_URL=database_url), capture_output=True, text=True,
        timeout=120,
    )


def test_eventlet_and_gevent_are_not_installed() -> None:
    assert importlib.util.find_spec("eventlet") is None
    assert importlib.util.find_spec("gevent") is None


def test_running_server_uses_threading_mode(server: ServerProcess) -> None:
    health = requests.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["async_mode"] == "threading"
    assert health.json()["checks"] == {"database": "ok"}


def test_migration_creates_the_schema_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = _flask_db(tmp_path, url, "upgrade")
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(url)
    try:
        assert EXPECTED_TABLES <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'drift.sqlite3'}"
    assert _flask_db(tmp_path, url, "upgrade").returncode == 0
    check = _flask_db(tmp_path, url, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip())


def test_procfile_runs_the_app_under_gunicorn_with_websockets(tmp_path: Path) -> None:
    procfile = _procfile()
    env = _env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'paas.sqlite3'}", PORT="0")
    release = subprocess.run(shlex.split(procfile["release"]), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    command = shlex.split(procfile["web"].replace("$PORT", env["PORT"]))
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = _gunicorn_port(proc)
        url = f"http://127.0.0.1:{port}"
        assert requests.get(url + "/healthz", timeout=10).json()["async_mode"] == "threading"
        account = register_account(url, "paas")
        client = socketio.Client(reconnection=False)
        client.connect(url, auth={"token": account.token}, transports=["websocket"],
                       wait_timeout=10)
        try:
            reply = client.call("join", {"room": "paas", "device": account.key.device_id},
                                timeout=10)
            assert reply["ok"] and reply["room"] == "paas"
        finally:
            client.disconnect()
    finally:
        stop_process(proc)


def _gunicorn_port(proc: subprocess.Popen[str]) -> int:
    """gunicorn logs `Listening at: http://0.0.0.0:PORT` on stderr once it is bound."""
    line = read_line_matching(proc, "Listening at:", timeout=60, stream=proc.stderr)
    match = re.search(r"Listening at: http://[0-9.]+:(\d+)", line)
    assert match, line
    return int(match.group(1))
