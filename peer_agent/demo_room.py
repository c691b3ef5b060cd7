"""The guided fault demo's room: a server that can be killed (-9) and restarted on the same
port, agents that can be killed and restarted with their data dir and their ports, and the JSON
calls the demo makes to them. Plain urllib, never through a proxy: everything is on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .processes import ChildError, Children, wait_for_lines

# A message as the demo compares logs: its id and its place in the display order.
LogKey = tuple[str, int, str, int]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PAGE_AGENT = 200
PAGE_SERVER = 500
RESTART_RETRIES_SECONDS = 5.0


class HttpError(RuntimeError):
    """A JSON call failed: refused, timed out, or answered with an error `status`."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def call(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None,
         timeout: float = 5.0) -> Any:
    """One JSON request; returns the decoded answer or raises HttpError saying what failed."""
    request = urllib.request.Request(url, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, data=data, timeout=timeout) as reply:
            return json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(300).decode(errors="replace").strip()
        raise HttpError(f"{method} {url}: HTTP {exc.code} {detail}".rstrip(), exc.code) from None
    except urllib.error.URLError as exc:
        raise HttpError(f"{method} {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a body that is not JSON
        raise HttpError(f"{method} {url}: {exc!r}") from None


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[-1])


def last_line(path: Path) -> str:
    """The last non-empty line of a log, to say why a child did not start."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError as exc:
        return f"(unreadable: {exc})"
    return lines[-1].strip() if lines else "(nothing)"


class _Child:
    """A child that can be launched, waited for (`ready`: it printed its address lines), killed
    (-9) and started again; `start` retries a restart, whose ports may still be held for a
    moment by its killed self."""

    markers: tuple[str, ...] = ()

    def __init__(self, children: Children, log: Path, extra_env: dict[str, str]) -> None:
        self.children, self.log, self.extra_env = children, log, extra_env
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def args(self) -> list[str]:
        raise NotImplementedError

    def launch(self) -> None:
        self.proc = self.children.start(self.args(), self.log, self.extra_env)

    def ready(self, timeout: float) -> None:
        """Wait until it printed its address lines, then take them in (`started`)."""
        assert self.proc is not None
        try:
            found = wait_for_lines(self.proc, self.markers, timeout)
        except ChildError as exc:
            self.children.stop(self.proc)
            raise ChildError(f"{exc}; {self.log.name} ends with: {last_line(self.log)}"
                             ) from None
        self.starts += 1
        self.started(found)

    def started(self, lines: list[str]) -> None:
        raise NotImplementedError

    def start(self, timeout: float) -> None:
        """Launch and wait until ready, within `timeout`. A restart that fails is tried again
        for a few seconds: its ports may still be held for a moment by its killed self."""
        now = time.monotonic()
        deadline = now + timeout
        retry_until = min(deadline, now + RESTART_RETRIES_SECONDS) if self.starts else now
        while True:
            self.launch()
            try:
                self.ready(max(1.0, deadline - time.monotonic()))
                return
            except ChildError:
                if time.monotonic() >= retry_until:
                    raise
            time.sleep(0.5)  # a back-off between attempts, not a wait for a state

    def kill(self) -> None:
        assert self.proc is not None
        self.children.kill(self.proc)


class ServerProcess(_Child):
    """`python -m signaling` on 127.0.0.1; port 0 picks a free port once, which every restart
    reuses so the agents' configured URL stays right."""

    markers = ("listening on",)

    def __init__(self, children: Children, log: Path, port: int) -> None:
        super().__init__(children, log, {})
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return ["-m", "signaling", "--host", "127.0.0.1", "--port", str(self.port)]

    def started(self, lines: list[str]) -> None:
        self.port = _port(lines[0])


class AgentProcess(_Child):
    """One device's `python -m peer_agent`, ICE and rendezvous pinned to 127.0.0.1. Restarts
    keep its data dir, its UI port (an open page reconnects) and its rendezvous port."""

    markers = ("UI on", "rendezvous on")

    def __init__(self, children: Children, name: str, user: str, password: str,
                 data_dir: Path, log: Path, server: ServerProcess, room: str,
                 register: bool) -> None:
        super().__init__(children, log, {"GIBBERISH_PASSWORD": password})
        self.name, self.user, self.data_dir = name, user, data_dir
        self.server, self.room, self.register = server, room, register
        self.ui_port = 0
        self.rendezvous_port = 0
        self.device = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def args(self) -> list[str]:
        """The first start registers the account if asked to, a restart never does."""
        register = ["--register"] if self.register and self.starts == 0 else []
        return ["-m", "peer_agent", "--server", self.server.url, "--user", self.user,
                "--room", self.room, "--data-dir", str(self.data_dir),
                "--ui-port", str(self.ui_port), "--ice-host", "127.0.0.1",
                "--rendezvous-host", "127.0.0.1", "--rendezvous-port", str(self.rendezvous_port),
                *register]

    def started(self, lines: list[str]) -> None:
        self.ui_port, self.rendezvous_port = _port(lines[0]), _port(lines[1])
        self.device = str(self.state()["device"])

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = call("GET", self.url + "/api/state")
        return result

    def send(self, text: str) -> dict[str, Any]:
        """Post a message; the answer is the stored message."""
        message: dict[str, Any] = call("POST", self.url + "/api/messages", {"text": text})[
            "message"]
        return message

    def note(self, text: str) -> None:
        """Add a line to the agent's timeline (the network view's demo notes)."""
        call("POST", self.url + "/api/events", {"text": text})

    def messages(self) -> list[dict[str, Any]]:
        """The whole local log in display order, paged backwards from the newest."""
        pages: list[list[dict[str, Any]]] = []
        before: str | None = None
        while True:
            query = {"limit": str(PAGE_AGENT), **({"before": before} if before else {})}
            page = call("GET", f"{self.url}/api/messages?{urllib.parse.urlencode(query)}")
            pages.append(page["messages"])
            before = page["older"]
            if before is None:
                return [m for chunk in reversed(pages) for m in chunk]

    def log_keys(self) -> list[LogKey]:
        return keys(self.messages())


class HistoryReader:
    """Reads the server's log of a room with its history API, as a signed-in user."""

    def __init__(self, server: ServerProcess, room: str, user: str, password: str) -> None:
        self.server, self.room, self.user, self.password = server, room, user, password
        self._token: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        """Every message the server stored in the room, in display order."""
        if self._token is None:
            self._token = str(call("POST", self.server.url + "/api/login",
                                   {"username": self.user, "password": self.password})["token"])
        rows: list[dict[str, Any]] = []
        after = 0
        room = urllib.parse.quote(self.room, safe="")
        while True:
            try:
                page = call("GET", f"{self.server.url}/api/rooms/{room}/messages"
                                   f"?after={after}&limit={PAGE_SERVER}", token=self._token)
            except HttpError as exc:
                if exc.status == 401:
                    self._token = None  # signed in again at the next call
                raise
            rows += page["messages"]
            if page["next"] is None or not page["messages"]:
                return sorted(rows, key=lambda m: (m["lamport"], m["device"], m["seq"]))
            after = int(page["next"])

    def log_keys(self) -> list[LogKey]:
        return keys(self.messages())


def keys(messages: list[dict[str, Any]]) -> list[LogKey]:
    return [(str(m["id"]), int(m["lamport"]), str(m["device"]), int(m["seq"]))
            for m in messages]
