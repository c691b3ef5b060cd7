"""The server as it is deployed: migrations on a fresh database, threading mode, the Procfile."""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from pathlib import Path

import requests
import socketio
import sqlalchemy as sa

from tests.helpers import ROOT
from tests.signaling.conftest import ServerProcess, database_engine, register_account
from tests.signaling.services import run_release, start_gunicorn, temporary_database

EXPECTED_TABLES = {"users", "devices", "rooms", "memberships", "presence", "messages",
                   "server_processes"}


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


def test_migration_creates_the_schema_on_a_fresh_postgresql_database(tmp_path: Path) -> None:
    with temporary_database() as url:
        result = _flask_db(tmp_path, url, "upgrade")
        assert result.returncode == 0, result.stderr
        engine = database_engine(url)
        try:
            assert EXPECTED_TABLES <= set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()


def test_models_and_migrations_do_not_drift_on_postgresql(tmp_path: Path) -> None:
    with temporary_database() as url:
        assert _flask_db(tmp_path, url, "upgrade").returncode == 0
        check = _flask_db(tmp_path, url, "check")
        assert check.returncode == 0, check.stdout + check.stderr


def test_migrations_downgrade_to_nothing_and_up_again_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'updown.sqlite3'}"
    for step in ("upgrade", "downgrade base", "upgrade"):
        result = _flask_db(tmp_path, url, *step.split())
        assert result.returncode == 0, f"{step}: {result.stderr}"


def test_migrations_downgrade_to_nothing_and_up_again_on_postgresql(tmp_path: Path) -> None:
    with temporary_database() as url:
        for step in ("upgrade", "downgrade base", "upgrade"):
            result = _flask_db(tmp_path, url, *step.split())
            assert result.returncode == 0, f"{step}: {result.stderr}"


def test_procfile_runs_the_app_under_gunicorn_with_websockets(tmp_path: Path) -> None:
    env = _env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'paas.sqlite3'}")
    run_release(env)
    web = start_gunicorn(env, tmp_path / "gunicorn.log")
    try:
        assert requests.get(web.url + "/healthz", timeout=10).json()["async_mode"] == "threading"
        account = register_account(web.url, "paas")
        client = socketio.Client(reconnection=False)
        client.connect(web.url, auth={"token": account.token}, transports=["websocket"],
                       wait_timeout=10)
        try:
            reply = client.call("join", {"room": "paas", "device": account.key.device_id},
                                timeout=10)
            assert reply["ok"] and reply["room"] == "paas"
        finally:
            client.disconnect()
    finally:
        web.stop()


def test_procfile_web_process_holds_150_websockets_and_still_answers_http(
    tmp_path: Path,
) -> None:
    """In threading mode each WebSocket holds one of gunicorn's threads for its lifetime: with
    100 threads the 101st client, and every HTTP request after it, would wait forever."""
    env = _env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'paas.sqlite3'}")
    run_release(env)
    web = start_gunicorn(env, tmp_path / "gunicorn.log")
    clients: list[socketio.Client] = []
    try:
        account = register_account(web.url, "many")
        for _ in range(150):
            client = socketio.Client(reconnection=False)
            client.connect(web.url, auth={"token": account.token}, transports=["websocket"],
                           wait_timeout=10)
            clients.append(client)
        assert requests.get(web.url + "/healthz", timeout=10).status_code == 200
    finally:
        for client in clients:
            client.disconnect()
        web.stop()
