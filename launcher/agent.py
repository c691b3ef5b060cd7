"""`python -m peer_agent` as a child process (see child.py), and the JSON calls made to its UI."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from launcher.child import Child
from launcher.http import call

PAGE = 200
# The longest back-off between two attempts to reach a server on this machine: the agent's
# default (10 s) spares a server across the internet, here it would only be waited out.
LOOPBACK_RECONNECT_MAX = 1.0


def ui_events(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The live events in one frame of an agent's UI WebSocket: the events of one turn of the
    agent's loop may come together as `{"type": "batch", "events": [...]}`."""
    if frame.get("type") == "batch":
        return list(frame["events"])
    return [frame]


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


class AgentProcess(Child):
    """One device's agent. ICE is pinned to `ice_host` (127.0.0.1 unless None: every real
    interface), and so is the rendezvous listener unless `rendezvous_host` says otherwise. The
    first start registers the account if `register`, a restart never does; a restart keeps the
    data dir and, with `keep_ports`, the UI and rendezvous ports (an open page reconnects).
    `sync_interval` and `reconnect_max` set the agent's --sync-interval and --reconnect-max
    (None: the agent's defaults, meant for a server across the internet). `rooms` are joined
    besides `room` on the first start; the agent remembers them (and every room joined through
    its UI) in its data dir.

    Calls about one room take `room` (None: the agent's first room)."""

    def __init__(self, server: HasUrl | str, user: str, room: str, data_dir: Path, password: str,
                 *, name: str | None = None, register: bool = True,
                 ice_host: str | None = "127.0.0.1", rendezvous: bool = True,
                 rendezvous_host: str | None = None, ui_port: int = 0,
                 rendezvous_port: int = 0, keep_ports: bool = False,
                 sync_interval: float | None = None, reconnect_max: float | None = None,
                 log_path: Path | None = None, rooms: tuple[str, ...] = (),
                 ready_timeout: float = 60.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GIBBERISH_PASSWORD": password}
        super().__init__(log_path or data_dir / "agent.log", env, ready_timeout)
        self.server, self.user, self.room, self.data_dir = server, user, room, data_dir
        self.rooms = rooms
        self.name = name or user
        self.password, self.register = password, register
        self.ice_host, self.rendezvous = ice_host, rendezvous
        self.rendezvous_host = rendezvous_host or ice_host
        self.ui_port, self.rendezvous_port, self.keep_ports = ui_port, rendezvous_port, keep_ports
        self.sync_interval, self.reconnect_max = sync_interval, reconnect_max
        self.markers = ("UI on", "rendezvous on") if rendezvous else ("UI on",)
        self.device = ""

    @property
    def server_url(self) -> str:
        return self.server if isinstance(self.server, str) else self.server.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def args(self) -> list[str]:
        args = ["-m", "peer_agent", "--server", self.server_url, "--user", self.user,
                "--room", self.room, *(a for r in self.rooms for a in ("--room", r)),
                "--data-dir", str(self.data_dir),
                "--ui-port", str(self.ui_port if self.keep_ports else 0)]
        if self.ice_host is not None:
            args += ["--ice-host", self.ice_host]
        if not self.rendezvous:
            args.append("--no-rendezvous")
        else:
            if self.rendezvous_host is not None:
                args += ["--rendezvous-host", self.rendezvous_host]
            if self.keep_ports:
                args += ["--rendezvous-port", str(self.rendezvous_port)]
        if self.sync_interval is not None:
            args += ["--sync-interval", f"{self.sync_interval:g}"]
        if self.reconnect_max is not None:
            args += ["--reconnect-max", f"{self.reconnect_max:g}"]
        if self.register and self.starts == 0:
            args.append("--register")
        return args

    def started(self, words: list[str]) -> None:
        self.ui_port = int(words[0].rsplit(":", 1)[-1])
        if self.rendezvous:
            self.rendezvous_port = int(words[1].rsplit(":", 1)[-1])
        self.device = str(self.state()["device"])

    # -- the UI's JSON API -----------------------------------------------------------------

    def get(self, path: str, params: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return call("GET", self.url + path + query, timeout=timeout)

    def state(self, room: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/state", {"room": room} if room else None)
        return result

    def send(self, text: str, timeout: float = 10.0, room: str | None = None) -> dict[str, Any]:
        """Post a message; the answer is the stored message (it is in the local log)."""
        body = {"text": text, **({"room": room} if room else {})}
        message: dict[str, Any] = call("POST", self.url + "/api/messages", body,
                                       timeout=timeout)["message"]
        return message

    def note(self, text: str) -> None:
        """Add a line to the agent's timeline (the network view's notes)."""
        call("POST", self.url + "/api/events", {"text": text})

    def messages(self, room: str | None = None) -> list[dict[str, Any]]:
        """The whole local log of a room in display order, paged backwards from the newest."""
        pages: list[list[dict[str, Any]]] = []
        before: str | None = None
        while True:
            page = self.get("/api/messages",
                            {"limit": str(PAGE), **({"before": before} if before else {}),
                             **({"room": room} if room else {})})
            pages.append(page["messages"])
            before = page["older"]
            if before is None:
                return [m for chunk in reversed(pages) for m in chunk]

    def texts(self, room: str | None = None) -> list[str]:
        return [m["text"] for m in self.messages(room)]

    def room_list(self) -> list[dict[str, Any]]:
        """The rooms the agent is in, each with its kind and unread count."""
        rooms: list[dict[str, Any]] = self.get("/api/rooms")["rooms"]
        return rooms

    def join(self, room: str, private: bool = False) -> dict[str, Any]:
        """Join a room (create it private with `private`); the room's state."""
        state: dict[str, Any] = call("POST", self.url + "/api/rooms",
                                     {"name": room, "private": private})
        return state

    def leave(self, room: str) -> None:
        call("DELETE", self.url + f"/api/rooms/{urllib.parse.quote(room)}")

    def direct(self, user: str) -> dict[str, Any]:
        """Open the direct-message room with `user`; its state."""
        state: dict[str, Any] = call("POST", self.url + "/api/dm", {"user": user})
        return state

    def device_links(self) -> list[dict[str, Any]]:
        """Every peer connection of the device, with the rooms it carries."""
        links: list[dict[str, Any]] = self.get("/api/links")["links"]
        return links

    def linked_users(self) -> set[str]:
        """The users this agent has an open data channel to."""
        return {p["user"] for p in self.state()["peers"] if p["state"] == "connected"}
