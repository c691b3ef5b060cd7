"""The launcher's promises, on the real server: it starts on a free port, comes back in place
after kill -9 (same port, same database and secret), answers nothing while frozen and again once
thawed, a child that dies at start is reported with the end of its log, and a child left running
is stopped when the process that started it exits or is sent SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import ROOT, ChildError, HttpError, ServerProcess, call, track
from launcher.server import OPEN_LIMITS
from tests.helpers import poll, read_line_matching, stop_process
from tests.signaling.conftest import PASSWORD, unique_name

# A program that starts a child with the launcher (Python's own HTTP server: any child will
# do, and this one starts at once), says its pid, and never stops it: it ends when its stdin
# closes, or on a signal.
LEAVES_A_CHILD = """
import os
import sys
from pathlib import Path
from launcher import Child

class HttpServer(Child):
    markers = ("Serving HTTP on",)

    def args(self):
        return ["-m", "http.server", "0", "--bind", "127.0.0.1"]

    def started(self, words):
        pass

child = HttpServer(Path(sys.argv[1]) / "http.log", {**os.environ, "PYTHONUNBUFFERED": "1"})
child.start()
print("child pid", child.pid, flush=True)
sys.stdin.read()
"""


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


def gone(pid: int) -> bool:
    """No such process, or only its zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("ending", ["exit", "SIGTERM"])
def test_a_child_left_running_is_stopped_when_its_parent_ends(tmp_path: Path,
                                                              ending: str) -> None:
    parent = track(subprocess.Popen([sys.executable, "-c", LEAVES_A_CHILD, str(tmp_path)],
                                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True))
    child_pid = 0
    try:
        child_pid = int(read_line_matching(parent, "child pid", timeout=60).split()[-1])
        assert not gone(child_pid)
        assert parent.stdin is not None
        if ending == "exit":
            parent.stdin.close()
        else:
            os.kill(parent.pid, signal.SIGTERM)
        assert parent.wait(timeout=30) == (0 if ending == "exit" else -signal.SIGTERM)
        poll(lambda: gone(child_pid), timeout=10, message=f"child {child_pid} to stop")
    finally:
        stop_process(parent)
        if child_pid and not gone(child_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
