"""The launcher's promises, on the real server: it starts on a free port, comes back in place
after kill -9 (same port, same database and secret), answers nothing while frozen and again once
thawed, and a child that dies at start is reported with the end of its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import ChildError, HttpError, ServerProcess, call
from launcher.server import OPEN_LIMITS
from tests.signaling.conftest import PASSWORD, unique_name


def register(server: ServerProcess, name: str) -> str:
    token: str = call("POST", server.url + "/api/register",
                      {"username": name, "password": PASSWORD})["token"]
    return token


def test_a_killed_server_comes_back_on_its_port_with_its_accounts(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server", env=OPEN_LIMITS)
    try:
        server.start()
        port, pid, name = server.port, server.pid, unique_name("alice")
        assert port != 0
        register(server, name)
        server.kill()
        assert not server.running
        server.start()
        assert (server.port, server.starts) == (port, 2) and server.pid != pid
        login = call("POST", server.url + "/api/login", {"username": name, "password": PASSWORD})
        assert login["token"]
    finally:
        server.stop()
    assert not server.running


def test_a_frozen_server_answers_nothing_until_it_is_thawed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server", env=OPEN_LIMITS)
    try:
        server.start()
        server.freeze()
        assert server.running and not server.up
        with pytest.raises(HttpError, match="timed out"):
            call("GET", server.url + "/healthz", timeout=1)
        server.thaw()
        assert server.up
        assert call("GET", server.url + "/healthz")["status"] == "ok"
    finally:
        server.stop()  # a frozen child is resumed first, so SIGTERM can end it


def test_a_child_that_dies_at_start_is_named_with_the_end_of_its_log(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server", database_url="nosuchdb://nowhere")
    with pytest.raises(ChildError, match=r"exited before printing 'listening on'.*server\.log"):
        server.start(timeout=60)
    assert not server.running
