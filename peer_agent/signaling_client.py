"""The agent's link to the server: sign-in over HTTP, then Socket.IO for presence, signals
and log uploads.

The Socket.IO client reconnects by itself with bounded, jittered backoff (python-socketio's
reconnection: the delay doubles from `reconnect_base` up to `reconnect_max`, plus or minus a
random half second); every (re)connection joins the room again and hands the fresh roster to
the agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio

from protocol import DeviceKey, Envelope

log = logging.getLogger("gibberish.agent.signaling")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


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
    """Owns the HTTP session and the Socket.IO client for one room of one device."""

    def __init__(
        self, server_url: str, room: str, key: DeviceKey, *,
        on_joined: Handler, on_peer_joined: Handler, on_peer_left: Handler,
        on_signal: Handler, on_stored: Handler, on_link: Callable[[bool], None],
        on_members: Handler | None = None, on_removed: Handler | None = None,
        rendezvous: str | None = None, reconnect_base: float = 0.5,
        reconnect_max: float = RECONNECT_MAX,
        call_timeout: float = 10.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.room = room
        self.key = key
        self.rendezvous = rendezvous
        self.token: str | None = None
        self.username: str | None = None
        self.joined = False
        # Counts join requests: the agent tells what it learned before the current join
        # went out from what it learned since (protocol/roster.py, kept_on_join).
        self.join_generation = 0
        # Set once a connection attempt failed or the link broke, cleared on joining: the UI
        # tells "connecting" (first attempt under way) from "down".
        self.unreachable = False
        # The server's answer to the last join: set once it joined or refused (`refusal` then
        # holds its error), so that joining from the UI can say at once why it failed.
        self.settled = asyncio.Event()
        self._joining: asyncio.Future[None] | None = None  # the join call under way
        self.refusal: dict[str, Any] | None = None
        self._handlers = {"peer_joined": on_peer_joined, "peer_left": on_peer_left,
                          "signal": on_signal, "stored": on_stored}
        if on_members is not None:
            self._handlers["members"] = on_members
        if on_removed is not None:
            self._handlers["removed"] = on_removed
        self._on_joined = on_joined
        self._on_link = on_link
        self._call_timeout = call_timeout
        self._http: aiohttp.ClientSession | None = None
        self._sio = socketio.AsyncClient(
            reconnection=True, reconnection_delay=reconnect_base,
            reconnection_delay_max=reconnect_max, randomization_factor=0.5, logger=False,
        )
        self._tasks: set[asyncio.Task[None]] = set()
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

    async def history(self, after: int, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Messages the server stored after `after`, and the cursor to ask for next time."""
        data = await self._get(f"/api/rooms/{self.room}/messages",
                               {"after": str(after), "limit": str(limit)})
        messages: list[dict[str, Any]] = data["messages"]
        last = messages[-1]["cursor"] if messages else after
        return messages, int(last)

    async def room_keys(self) -> list[dict[str, Any]]:
        data = await self._get(f"/api/rooms/{self.room}/keys")
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
            self._spawn(self._join())

        @sio.event  # type: ignore[untyped-decorator]
        async def disconnect(reason: Any = None) -> None:
            if self.joined:
                log.warning("server link lost (%s)", reason)
            self.joined = False
            self.unreachable = True
            self._on_link(False)

        @sio.event  # type: ignore[untyped-decorator]
        async def connect_error(data: Any) -> None:
            log.info("server connection failed: %s", data)
            self.unreachable = True
            self._on_link(False)

        for name, handler in self._handlers.items():
            sio.on(name, self._dispatch(name, handler))

    def _dispatch(self, name: str, handler: Handler) -> Callable[[Any], Awaitable[None]]:
        async def run(data: Any) -> None:
            if not isinstance(data, dict) or data.get("room") != self.room:
                return
            try:
                result = handler(data)
                if result is not None:
                    await result
            except Exception:
                log.exception("handling %s from the server failed", name)

        return run

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _join(self) -> None:
        request: dict[str, Any] = {"room": self.room, "device": self.key.device_id}
        if self.rendezvous:
            request["rendezvous"] = self.rendezvous
        self.join_generation += 1
        joining = self._joining = asyncio.get_running_loop().create_future()
        try:
            await self._join_call(request)
        finally:
            if not joining.done():
                joining.set_result(None)

    async def _join_call(self, request: dict[str, Any]) -> None:
        try:
            reply = await self._sio.call("join", request, timeout=self._call_timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
            log.warning("join failed: %s", exc)
            return
        if not reply.get("ok"):
            log.error("the server refused to join %s: %s", self.room, reply.get("error"))
            error = reply.get("error")
            self.refusal = error if isinstance(error, dict) else {"message": str(error)}
            self.settled.set()
            return
        self.refusal = None
        self.settled.set()
        self.joined = True
        if self._joining is not None and not self._joining.done():
            self._joining.set_result(None)
        self.unreachable = False
        self._on_link(True)
        result = self._on_joined(reply)
        if result is not None:
            await result

    def start(self) -> None:
        """Connect in the background, retrying until the server answers."""
        assert self.token, "sign in or use_token first"
        self._connect_task = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            await self._sio.connect(self.server_url, auth={"token": self.token},
                                    transports=["websocket"], wait_timeout=5, retry=True)
        except socketio.exceptions.ConnectionError as exc:
            if not self._closed:
                log.error("giving up connecting to the server: %s", exc)

    async def signal(self, to: str, kind: str, payload: dict[str, Any]) -> bool:
        if not self.joined and self._joining is not None and not self._joining.done():
            # A peer_joined (and the offer it set off) can overtake the reply to our own join:
            # the server has taken the join by then, so wait for the reply rather than let
            # the offer go nowhere.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._joining), self._call_timeout)
        if not self.joined:
            return False
        try:
            reply = await self._sio.call("signal", {"room": self.room, "to": to, "kind": kind,
                                                    "payload": payload},
                                         timeout=self._call_timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
            log.warning("signal to %s failed: %s", to, exc)
            return False
        if not reply.get("ok"):
            log.warning("signal to %s refused: %s", to, reply.get("error"))
        return bool(reply.get("ok"))

    async def leave(self) -> None:
        """Leave the room on the server (members hear `peer_left` with reason "left");
        best effort: a server that does not answer learns it when the connection closes."""
        if not self.joined:
            return
        try:
            await self._sio.call("leave", {"room": self.room}, timeout=self._call_timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
            log.info("leave not acknowledged: %s", exc)
        self.joined = False

    async def publish(self, envelopes: list[Envelope]) -> list[dict[str, Any]] | None:
        """Upload envelopes; the per-envelope results, or None if the server is unreachable."""
        if not self.joined or not envelopes:
            return None
        try:
            reply = await self._sio.call(
                "publish", {"envelopes": [e.to_dict() for e in envelopes]},
                timeout=self._call_timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
            log.info("upload failed, will retry: %s", exc)
            return None
        if not reply.get("ok"):
            log.warning("upload refused: %s", reply.get("error"))
            return None
        return list(reply["results"])

    async def close(self) -> None:
        self._closed = True
        if self._connect_task is not None:
            self._connect_task.cancel()
        try:
            await self._sio.disconnect()
        except Exception:  # the client may be mid-reconnect; disconnect is best effort
            log.debug("disconnect during close failed", exc_info=True)
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()
