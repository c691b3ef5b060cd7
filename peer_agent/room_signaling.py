"""One room on the device's Socket.IO connection (signaling_client.py): its join, made again
on every (re)connection, its signals, uploads and leave, and the server's notices for it.

Every fault rule of the server link holds per room: a room that the server refuses stays
refused while the others carry on; a reconnection joins every room again; a signal waits for
the reply to its own room's join; an upload goes only while its room is joined."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from protocol import Envelope

from .signaling_client import CALL_ERRORS, Handler, SignalingClient

log = logging.getLogger("gibberish.agent.signaling")


class RoomSignaling:
    """The server link of one room of the device, over the device's one connection."""

    def __init__(
        self, connection: SignalingClient, room: str, *,
        on_joined: Handler, on_peer_joined: Handler, on_peer_left: Handler,
        on_signal: Handler, on_stored: Handler, on_link: Callable[[bool], None],
        on_members: Handler | None = None, on_removed: Handler | None = None,
        rendezvous: str | None = None,
    ) -> None:
        self.connection = connection
        self.room = room
        self.rendezvous = rendezvous
        self.joined = False
        self.left = False  # leave() was called: a join answered later does not start the room
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
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the connection's side --------------------------------------------------------------

    def connected(self) -> None:
        """The connection is up (again): join the room. The join counts as under way from
        now (`leave` called in this same turn waits for its answer)."""
        if self.left:
            return
        self._joining = asyncio.get_running_loop().create_future()
        self._spawn(self._join(self._joining))

    def disconnected(self) -> None:
        """The connection broke, or could not be made: the room is not joined."""
        self.joined = False
        self.unreachable = True
        self._on_link(False)

    async def notice(self, name: str, data: dict[str, Any]) -> None:
        """A notice from the server for this room."""
        handler = self._handlers.get(name)
        if handler is None:
            return
        try:
            result = handler(data)
            if result is not None:
                await result
        except Exception:
            log.exception("handling %s from the server failed", name)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _join(self, joining: asyncio.Future[None]) -> None:
        request: dict[str, Any] = {"room": self.room, "device": self.connection.key.device_id}
        if self.rendezvous:
            request["rendezvous"] = self.rendezvous
        self.join_generation += 1
        try:
            await self._join_call(request)
        finally:
            if not joining.done():
                joining.set_result(None)

    async def _join_call(self, request: dict[str, Any]) -> None:
        try:
            reply = await self.connection.call("join", request)
        except CALL_ERRORS as exc:
            log.warning("join of %s failed: %s", self.room, exc)
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
        if self.left:
            return  # leave() is waiting for this answer to leave at the server
        self.unreachable = False
        self._on_link(True)
        result = self._on_joined(reply)
        if result is not None:
            await result

    # -- the room's side --------------------------------------------------------------------

    def start(self) -> None:
        """Put the room on the device's connection: joined now if it is up, else once it is."""
        self.connection.attach(self)

    async def _join_answered(self) -> None:
        """If a join is on its way and not answered, wait for its answer (at most a call's
        time-out)."""
        if not self.joined and self._joining is not None and not self._joining.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._joining),
                                       self.connection.call_timeout)

    async def signal(self, to: str, kind: str, payload: dict[str, Any]) -> bool:
        # A peer_joined (and the offer it set off) can overtake the reply to our own join:
        # the server has taken the join by then, so wait for the reply rather than let the
        # offer go nowhere.
        await self._join_answered()
        if not self.joined:
            return False
        try:
            reply = await self.connection.call(
                "signal", {"room": self.room, "to": to, "kind": kind, "payload": payload})
        except CALL_ERRORS as exc:
            log.warning("signal to %s failed: %s", to, exc)
            return False
        if not reply.get("ok"):
            log.warning("signal to %s refused: %s", to, reply.get("error"))
        return bool(reply.get("ok"))

    async def leave(self) -> None:
        """Leave the room on the server (members hear `peer_left` with reason "left"); the
        device's other rooms stay. Best effort: a server that does not answer learns it when
        the connection closes."""
        self.left = True
        # A join on its way is answered first: the server runs each event in a thread of its
        # own, so a leave sent now could be handled before it, and the join would stay.
        await self._join_answered()
        if not self.joined:
            return
        try:
            await self.connection.call("leave", {"room": self.room})
        except CALL_ERRORS as exc:
            log.info("leave not acknowledged: %s", exc)
        self.joined = False

    async def publish(self, envelopes: list[Envelope]) -> list[dict[str, Any]] | None:
        """Upload envelopes; the per-envelope results, or None if the server is unreachable."""
        if not self.joined or not envelopes:
            return None
        try:
            reply = await self.connection.call(
                "publish", {"envelopes": [e.to_dict() for e in envelopes]})
        except CALL_ERRORS as exc:
            log.info("upload failed, will retry: %s", exc)
            return None
        if not reply.get("ok"):
            log.warning("upload refused: %s", reply.get("error"))
            return None
        return list(reply["results"])

    async def history(self, after: int, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """The room's messages the server stored after `after`, and the next cursor."""
        return await self.connection.history(self.room, after, limit)

    async def room_keys(self) -> list[dict[str, Any]]:
        return await self.connection.room_keys(self.room)

    async def ice_config(self) -> tuple[list[dict[str, Any]], int | None]:
        return await self.connection.ice_config()

    async def close(self) -> None:
        """Take the room off the connection (without leaving it on the server: `leave`)."""
        self.connection.detach(self)
        self.joined = False
        for task in list(self._tasks):
            task.cancel()
