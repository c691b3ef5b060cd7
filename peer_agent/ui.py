"""The user's chat UI and the JSON API behind it, served by aiohttp on 127.0.0.1 only.

Only same-origin requests are served: a request whose Host is not this agent's address (DNS
rebinding) or whose Origin is another site (a page elsewhere posting into the chat, or any
scheme but http) gets 403, and posting a message needs a JSON body, which a cross-site form
cannot send. Bodies are decoded by one policy (`protocol.strict_json`, UTF-8 only): whatever
cannot be decoded is a 400 that says why.

One UI serves every room of the device. Calls about one room name it (`?room=` or `"room"` in
the body); without a name they mean the first room joined. Live events carry their `room`.

A page says on its WebSocket which room it reads: `{"type": "reading", "room": name}` while it
shows that room in view, `"room": null` while it is hidden (readers.py: that room's messages
are seen as they come, not counted unread). Anything else a page sends there (longer than
ui_input.MAX_PAGE_FRAME, not a JSON object, another type, a room that is not a name of this
device) is ignored and logged: a page's mistake does not cost it its live events. What pages
send is read in ui_input.py."""


from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import WSMessage, WSMsgType, web

from . import trace
from .ui_input import UIError, json_body, limit_of, reading_of, room_of, text_of

log = logging.getLogger("gibberish.agent.ui")

STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_BODY = 64 * 1024
# Live events leave at the end of the loop turn that posted them while the frames of the last
# moments stay within a budget: UI_FLUSH_BURST frames at once, refilled by one every
# UI_FLUSH_INTERVAL seconds. In a busy room, beyond it, a frame of delivery marks, notices and
# states waits for the budget and takes whatever came in the meantime, so those frames are
# still UI_FLUSH_INTERVAL apart. A message is what the reader waits for: a frame holding one
# leaves at the end of its turn whatever the budget (and takes the waiting events with it).
# An idle room's author gets a delivery mark per peer and one for the server, each in a turn
# of its own, and a state push: with messages bound by the budget too, a message a few
# milliseconds after the one before waited out the rest of an interval (3.6 ms at the
# median in bench.mesh's idle pass), while a frame costs its writer about 50 µs of CPU.
UI_FLUSH_INTERVAL = 0.01
UI_FLUSH_BURST = 16


class ChatBackend(Protocol):
    """What the UI needs from the agent (device.py); `room` None means the first room."""

    def state(self, room: str | None = None) -> dict[str, Any]: ...
    def messages_page(self, room: str | None, before: str | None,
                      limit: int) -> dict[str, Any]: ...
    async def post_message(self, room: str | None, text: str) -> dict[str, Any]: ...
    def events(self, room: str | None, limit: int) -> dict[str, Any]: ...
    def note(self, room: str | None, text: str) -> dict[str, Any]: ...
    def message_path(self, room: str | None, message_id: str) -> dict[str, Any]: ...
    def rooms_list(self) -> list[dict[str, Any]]: ...
    async def join(self, name: str, private: bool = False) -> dict[str, Any]: ...
    async def direct(self, user: str) -> dict[str, Any]: ...
    async def leave(self, name: str) -> dict[str, Any]: ...
    def mark_read(self, name: str) -> dict[str, Any]: ...
    def reading(self, page: Hashable, room: str | None) -> None: ...
    def links(self) -> dict[str, Any]: ...


class Coalesced:
    """Run `action` soon after `request()`, at most once every `interval` seconds: requests made
    while a run is due are merged into it. For pushes to the pages that a busy room would
    otherwise make with every message."""

    def __init__(self, action: Callable[[], None], interval: float) -> None:
        self._action = action
        self._interval = interval
        self._due: asyncio.TimerHandle | None = None
        self._ran_at = float("-inf")

    def request(self) -> None:
        if self._due is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._ran_at + self._interval - loop.time())
        self._due = loop.call_later(delay, self._run)

    def cancel(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None

    def _run(self) -> None:
        self._due = None
        self._ran_at = asyncio.get_running_loop().time()
        self._action()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class ChatUI:
    """The aiohttp application; `post(event)` queues a live event for every open page."""

    def __init__(self, backend: ChatBackend, host: str = "127.0.0.1", port: int = 0, *,
                 flush_interval: float = UI_FLUSH_INTERVAL) -> None:
        self.backend = backend
        self.host = host
        self.port = port
        self._sockets: set[web.WebSocketResponse] = set()
        # Events posted in one turn of the event loop go out together (`post`).
        self._pending: list[str] = []
        self._pending_ids: list[str] = []  # of the messages among them, when tracing
        # Events built as the frame leaves (`post_latest`), by kind.
        self._latest: dict[str, Callable[[], dict[str, Any]]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._urgent = False  # a message is among the pending events: no wait for the budget
        self._waiting: asyncio.Future[None] | None = None  # the flush's wait for the budget
        self._flush_interval = flush_interval
        self._budget = float(UI_FLUSH_BURST)  # frames that may leave now (UI_FLUSH_BURST)
        self._budget_at = 0.0
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._same_origin, self._errors],
                                   client_max_size=MAX_BODY)
        self.app.add_routes([
            web.get("/", self._index),
            web.get("/api/state", self._state),
            web.get("/api/messages", self._messages),
            web.post("/api/messages", self._post_message),
            web.get("/api/messages/{id}/path", self._message_path),
            web.get("/api/events", self._events),
            web.post("/api/events", self._post_event),
            web.get("/api/rooms", self._rooms),
            web.post("/api/rooms", self._join),
            web.delete("/api/rooms/{room}", self._leave),
            web.post("/api/rooms/{room}/read", self._read),
            web.post("/api/dm", self._direct),
            web.get("/api/links", self._links),
            web.get("/ws", self._ws),
            web.static("/static", STATIC),
        ])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}

    @web.middleware
    async def _same_origin(self, request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                           ) -> web.StreamResponse:
        if request.host not in self._allowed_hosts():
            log.warning("refused a request for host %r", request.host)
            return _error(403, "bad_host", "this agent only answers on its own address")
        origin = request.headers.get("Origin")
        if origin is not None and not self._same_origin_header(origin):
            log.warning("refused a cross-origin request from %r to %s", origin, request.path)
            return _error(403, "cross_origin", "requests from other sites are refused")
        return await handler(request)

    def _same_origin_header(self, origin: str) -> bool:
        """Whether an Origin header names this UI: http, one of its own host names and port."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return (parts.scheme == "http" and not parts.path and not parts.query
                and parts.netloc in self._allowed_hosts())

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                      ) -> web.StreamResponse:
        try:
            return await handler(request)
        except UIError as exc:
            return _error(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"request larger than {MAX_BODY} bytes")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "chat.html")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.backend.state(request.query.get("room")))

    async def _messages(self, request: web.Request) -> web.Response:
        limit = limit_of(request, default=50, most=200)
        return web.json_response(self.backend.messages_page(
            request.query.get("room"), request.query.get("before"), limit))

    async def _post_message(self, request: web.Request) -> web.Response:
        if trace.ON:
            trace.request_started.set(time.perf_counter())
        body = await json_body(request)
        message = await self.backend.post_message(room_of(body), text_of(body))
        return web.json_response({"message": message}, status=201)

    async def _message_path(self, request: web.Request) -> web.Response:
        return web.json_response(self.backend.message_path(request.query.get("room"),
                                                           request.match_info["id"]))

    async def _events(self, request: web.Request) -> web.Response:
        return web.json_response(self.backend.events(request.query.get("room"),
                                                     limit_of(request, default=500, most=500)))

    async def _post_event(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        event = self.backend.note(room_of(body), text_of(body))
        return web.json_response({"event": event}, status=201)

    async def _rooms(self, request: web.Request) -> web.Response:
        return web.json_response({"rooms": self.backend.rooms_list()})

    async def _join(self, request: web.Request) -> web.Response:
        """Join a room by name, or create it private: `{"name", "private": bool}`."""
        body = await json_body(request)
        name, private = body.get("name"), body.get("private", False)
        if not isinstance(name, str) or not isinstance(private, bool):
            raise UIError(400, "invalid_request",
                          "the body must be {\"name\": \"…\", \"private\": false}")
        return web.json_response(await self.backend.join(name, private), status=201)

    async def _leave(self, request: web.Request) -> web.Response:
        return web.json_response(await self.backend.leave(request.match_info["room"]))

    async def _read(self, request: web.Request) -> web.Response:
        return web.json_response(self.backend.mark_read(request.match_info["room"]))

    async def _direct(self, request: web.Request) -> web.Response:
        """Open the direct-message room with `{"user"}`."""
        user = (await json_body(request)).get("user")
        if not isinstance(user, str):
            raise UIError(400, "invalid_request", "the body must be {\"user\": \"…\"}")
        return web.json_response(await self.backend.direct(user), status=201)

    async def _links(self, request: web.Request) -> web.Response:
        return web.json_response(self.backend.links())

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            rooms = self.backend.rooms_list()
            if not rooms:
                await ws.send_json({"type": "state", "room": None, "state": self.backend.state()})
            for room in rooms:
                await ws.send_json({"type": "state", "room": room["name"],
                                    "state": self.backend.state(room["name"])})
            await ws.send_json({"type": "rooms", "rooms": rooms})
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                self._from_page(ws, msg)
        finally:
            self._sockets.discard(ws)
            self.backend.reading(ws, None)
        return ws

    def _from_page(self, ws: web.WebSocketResponse, msg: WSMessage) -> None:
        """A frame from the page on `ws`: the room it reads from now on. Whatever else it sends
        is ignored and logged, and the socket stays open."""
        try:
            if msg.type != WSMsgType.TEXT:
                raise UIError(400, "invalid_frame", f"a {msg.type.name} frame: only text "
                              "frames are read")
            self.backend.reading(ws, reading_of(msg.data))
        except UIError as exc:
            log.info("ignored a frame from a page: %s: %s", exc.code, exc.message)

    def post(self, event: dict[str, Any]) -> None:
        """Queue a live event for every open page. The events of one loop turn (of a wait for
        the frame budget, when busy: UI_FLUSH_BURST) leave in one WebSocket frame: the event
        itself when it is alone, else `{"type": "batch", "events": [...]}` in the order posted
        (a busy room sends many, and each frame is a write to every socket)."""
        if not self._sockets:
            return
        self._pending.append(json.dumps(event))
        if event.get("type") == "message":
            if trace.ON:
                self._pending_ids.append(event["message"]["id"])
            self._urgent = True
            if self._waiting is not None and not self._waiting.done():
                self._waiting.set_result(None)  # the frame waiting for the budget leaves now
        self._flush_soon()

    def post_latest(self, kind: str, build: Callable[[], dict[str, Any]]) -> None:
        """Queue an event that says how things stand (the rooms list with its unread counts),
        built by `build` only when the next frame leaves and sent once in it, after the events
        posted before then, however many times it was asked for meanwhile. A received message
        changes the unread count: built at once, the list went in a frame of its own after
        each message's."""
        if not self._sockets:
            return
        self._latest[kind] = build
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            # This task's first step comes after the rest of the turn that posted: its events
            # have joined. Beyond the budget, a busy spell's join too.
            wait = (1.0 - self._refill()) * self._flush_interval
            if wait > 0 and not self._urgent:
                await self._wait_for_budget(wait)
            self._urgent = False
            pending, self._pending = self._pending, []
            latest, self._latest = self._latest, {}
            pending += [json.dumps(build()) for build in latest.values()]
            if not pending:
                return
            self._refill()
            self._budget = max(0.0, self._budget - 1.0)  # a message's frame may leave at 0
            traced, self._pending_ids = self._pending_ids, []
            for message_id in traced:
                trace.mark(message_id, "ui_flush")
            data = (pending[0] if len(pending) == 1
                    else '{"type": "batch", "events": [' + ", ".join(pending) + "]}")
            for ws in list(self._sockets):
                try:
                    await ws.send_str(data)
                except (ConnectionError, RuntimeError):
                    self._sockets.discard(ws)
            for message_id in traced:
                trace.mark(message_id, "ui_written")
        finally:
            self._flushing = None
            if self._pending or self._latest:
                self._flushing = asyncio.ensure_future(self._flush())

    async def _wait_for_budget(self, wait: float) -> None:
        """Sleep `wait` seconds, or less if a message is posted meanwhile."""
        loop = asyncio.get_running_loop()
        self._waiting = waiting = loop.create_future()

        def settle() -> None:
            if not waiting.done():
                waiting.set_result(None)

        timer = loop.call_later(wait, settle)
        try:
            await waiting
        finally:
            timer.cancel()
            self._waiting = None

    def _refill(self) -> float:
        """The frame budget now: one more per flush interval since it was last counted, at
        most UI_FLUSH_BURST."""
        now = asyncio.get_running_loop().time()
        self._budget = min(float(UI_FLUSH_BURST),
                           self._budget + (now - self._budget_at) / self._flush_interval)
        self._budget_at = now
        return self._budget

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
