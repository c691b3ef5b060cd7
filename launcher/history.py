"""The server's log of a room, read through its history API as a signed-in user."""

from __future__ import annotations

import urllib.parse
from typing import Any, Protocol

from launcher.http import HttpError, call

PAGE = 500
# A message as logs are compared: its id and its place in the display order.
LogKey = tuple[str, int, str, int]


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


class HistoryReader:
    """Reads the server's log of `room` as `user`, signing in again when the token expired
    (a restarted server with a new secret)."""

    def __init__(self, server: HasUrl, room: str, user: str, password: str) -> None:
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
                                   f"?after={after}&limit={PAGE}", token=self._token)
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
    """Each message's id and place in the display order."""
    return [(str(m["id"]), int(m["lamport"]), str(m["device"]), int(m["seq"]))
            for m in messages]
