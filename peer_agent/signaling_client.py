"""The device's link to the server: sign-in over HTTP, then one Socket.IO connection for
presence, signals and log uploads in every room of the device.

A room is a `RoomSignaling` (room_signaling.py) attached to the connection: every event names
its room, and the connection hands a notice from the server to that room's handlers (one for a
room the device is not in is dropped). The server lets one connection be in any number of
rooms and checks each event against its room: membership for join, signal and publish, and a
signal only to a device present in that room.

The Socket.IO client reconnects by itself with bounded, jittered backoff (python-socketio's
reconnection: the delay doubles from `reconnect_base` up to `reconnect_max`, plus or minus a
random half second); every (re)connection joins every attached room again, and each room hands
its fresh roster to its agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import socketio

from protocol import DeviceKey

if TYPE_CHECKING:
    from .room_signaling import RoomSignaling

log = logging.getLogger("gibberish.agent.signaling")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
# What a Socket.IO call raises when the server does not answer or the connection is down.
CALL_ERRORS = (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError)
# The server's notices to a room (each names its room): handed to that room's handlers.
ROOM_NOTICES = ("peer_joined", "peer_left", "signal", "stored", "members", "removed")


class SignInError(Exception):
    """The server refused the user name, password or device key; the message says why."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

# The longest wait between two attempts to reach the server: an outage of minutes costs at most
# this much more, and a server many agents return to is not stormed.
RECONNECT_MAX = 10.0


class SignalingClient:
    """Owns the device's HTTP session and its one Socket.IO connection, shared by the rooms
    attached to it."""

    def __init__(
        self, server_url: str, key: DeviceKey, *, reconnect_base: float = 0.5,
        reconnect_max: float = RECONNECT_MAX, call_timeout: float = 10.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.key = key
        self.token: str | None = None
        self.username: str | None = None
        # The rooms on this connection, by name; each joins on every (re)connection.
        self.rooms: dict[str, RoomSignaling] = {}
        self.connected = False
        # Set once a connection attempt failed or the link broke, cleared on connecting.
        self.unreachable = False
        self.call_timeout = call_timeout
        self._http: aiohttp.ClientSession | None = None
        self._sio = socketio.AsyncClient(
            reconnection=True, reconnection_delay=reconnect_base,
            reconnection_delay_max=reconnect_max, randomization_factor=0.5, logger=False,
        )
        self._connect_task: asyncio.Task[None] | None = None
        self._closed = False
        self._wire()

    # -- HTTP -------------------------------------------------------------------------------

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._http

    async def _post(self, path: str, body: dict[str, Any], auth: bool = False) -> Any:
        http = await self._session()
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        async with http.post(self.server_url + path, json=body, headers=headers) as reply:
            data = await reply.json(content_type=None)
            if reply.status >= 400:
                err = data.get("error", {}) if isinstance(data, dict) else {}
                raise SignInError(err.get("message") or f"HTTP {reply.status} from {path}")
            return data

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        http = await self._session()
        headers = {"Authorization": f"Bearer {self.token}"}
        async with http.get(self.server_url + path, params=params, headers=headers) as reply:
            data = await reply.json(content_type=None)
            if reply.status >= 400:
                err = data.get("error", {}) if isinstance(data, dict) else {}
                raise SignInError(err.get("message") or f"HTTP {reply.status} from {path}")
            return data

    async def sign_in(self, credentials: Credentials, register: bool = False) -> str:
        """Sign in (registering first if asked and the name is free) and register this
        device's key to the account. Returns the normalised user name."""
        body = {"username": credentials.username, "password": credentials.password}
        if register:
            try:
                await self._post("/api/register", body)
            except SignInError as exc:
                if "already taken" not in str(exc):
                    raise
        data = await self._post("/api/login", body)
        self.token = data["token"]
        self.username = data["user"]["username"]
        await self._post("/api/devices", {"public_key": self.key.public_key_b64}, auth=True)
        return str(self.username)

    def use_token(self, token: str, username: str) -> None:
        """Use a token kept from an earlier run (the server may be down right now)."""
        self.token, self.username = token, username

    async def create_room(self, room: str, private: bool,
                          members: list[str] | None = None) -> dict[str, Any]:
        """Make a room on the server (this user its owner); what the server says of it."""
        body: dict[str, Any] = {"name": room, "private": private}
        if members:
            body["members"] = members
        data: dict[str, Any] = await self._post("/api/rooms", body, auth=True)
        return data

    async def direct_room(self, username: str) -> str:
        """The name of the direct-message room with `username`, made on first use."""
        data = await self._post("/api/dm", {"username": username}, auth=True)
        return str(data["room"])

    async def history(self, room: str, after: int,
                      limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Messages the server stored in `room` after `after`, and the cursor to ask for next
        time."""
        data = await self._get(f"/api/rooms/{room}/messages",
                               {"after": str(after), "limit": str(limit)})
        messages: list[dict[str, Any]] = data["messages"]
        last = messages[-1]["cursor"] if messages else after
        return messages, int(last)

    async def room_keys(self, room: str) -> list[dict[str, Any]]:
        """The registered keys of the devices in `room`."""
        data = await self._get(f"/api/rooms/{room}/keys")
        return list(data["devices"])

    async def ice_config(self) -> tuple[list[dict[str, Any]], int | None]:
        """The ICE servers the server hands this user now (TURN credentials freshly minted),
        and how many seconds those credentials last (None: no expiry)."""
        data = await self._get("/api/config")
        ttl = data.get("ice_ttl")
        return list(data.get("ice_servers") or []), ttl if isinstance(ttl, int) else None

        # -- Socket.IO --------------------------------------------------------------------------

    def _wire(self) -> None:
        sio = self._sio

        @sio.event  # type: ignore[untyped-decorator]
        async def connect() -> None:
            self.connected = True
            self.unreachable = False
            for room in list(self.rooms.values()):
                room.connected()

        @sio.event  # type: ignore[untyped-decorator]
        async def disconnect(reason: Any = None) -> None:
            if self.connected:
                log.warning("server link lost (%s)", reason)
            self.connected = False
            self.unreachable = True
            for room in list(self.rooms.values()):
                room.disconnected()

        @sio.event  # type: ignore[untyped-decorator]
        async def connect_error(data: Any) -> None:
            log.info("server connection failed: %s", data)
            self.unreachable = True
            for room in list(self.rooms.values()):
                room.disconnected()

        for name in ROOM_NOTICES:
            sio.on(name, self._dispatch(name))

    def _dispatch(self, name: str) -> Callable[[Any], Awaitable[None]]:
        async def run(data: Any) -> None:
            tag = data.get("room") if isinstance(data, dict) else None
            room = self.rooms.get(tag) if isinstance(tag, str) else None
            if room is not None:
                await room.notice(name, data)

        return run

    def attach(self, room: RoomSignaling) -> None:
        """Put a room on the connection: it joins now if the connection is up, and on every
        (re)connection."""
        self.rooms[room.room] = room
        room.unreachable = self.unreachable
        if self.connected:
            room.connected()

    def detach(self, room: RoomSignaling) -> None:
        """Take a room off the connection: notices for it are dropped from now on."""
        if self.rooms.get(room.room) is room:
            del self.rooms[room.room]

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send an event and wait for its acknowledgement; raises one of CALL_ERRORS when the
        server does not answer in time or the connection is down."""
        reply: dict[str, Any] = await self._sio.call(event, data, timeout=self.call_timeout)
        return reply

    def start(self) -> None:
        """Connect in the background, retrying until the server answers (once: later calls
        do nothing)."""
        assert self.token, "sign in or use_token first"
        if self._connect_task is None:
            self._connect_task = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            await self._sio.connect(self.server_url, auth={"token": self.token},
                                    transports=["websocket"], wait_timeout=5, retry=True)
        except socketio.exceptions.ConnectionError as exc:
            if not self._closed:
                log.error("giving up connecting to the server: %s", exc)

    async def close(self) -> None:
        self._closed = True
        if self._connect_task is not None:
            self._connect_task.cancel()
        try:
            await self._sio.disconnect()
        except Exception:  # the client may be mid-reconnect; disconnect is best effort
            log.debug("disconnect during close failed", exc_info=True)
        for room in list(self.rooms.values()):
            await room.close()
        if self._http is not None:
            await self._http.close()
