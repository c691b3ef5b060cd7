"""The data channel of a link, and how the mesh knows it still works: ping and pong.

A link is CONNECTED while its data channel is open. Every `ping_interval` each side sends
`{"t":"ping","n":..,"at":..}` and answers pings with `{"t":"pong",..}`; these frames stay inside
the mesh. They give `Link.rtt_ms`. A link with no pong for `ping_timeout` is DISCONNECTED: its
connection is kept and pinged, only pings and pongs travel on it, and the first pong makes it
CONNECTED again (the agent then compares version vectors). After `recover_grace` more without a
pong it has FAILED and is retried with a fresh connection (`protocol/link_rules.py`; aiortc 1.16
cannot restart ICE in place). `probe` asks for a pong at once.

`Keepalive` is a part of `peer_agent.mesh.Mesh`, kept in its own module; what it uses of the
rest of the mesh is declared at the top of the class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel

from protocol import ProtocolError
from protocol.channel import PingFrame, PongFrame, is_control_frame, parse_channel_frame
from protocol.link_rules import Liveness, Verdict

from .link import Link, LinkState, PeerInfo, short

log = logging.getLogger("peer_agent.mesh")

# Ping and pong frames are a few dozen bytes; longer frames are never parsed by the mesh.
_CONTROL_FRAME_MAX_CHARS = 256


class Keepalive:
    """The data channel side of the mesh: open, receive, send, ping and pong."""

    _closed: bool
    _links: dict[str, Link]
    _on_frame: Callable[[PeerInfo, str], None]
    _ping_interval: float
    _ping_timeout: float
    _recover_grace: float

    if TYPE_CHECKING:
        # The rest of the mesh (peer_agent.mesh).
        def _fail(self, link: Link, reason: str) -> None: ...
        def _set_state(self, link: Link, state: LinkState) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, None], link: Link) -> asyncio.Task[None]: ...
        def nudge(self, device: str, *, force: bool = False) -> bool: ...

    def probe(self, device: str, timeout: float = 1.5) -> None:
        """Check at once that an open link still answers: ping it, and fail it if no pong
        comes within `timeout`. A peer that restarted leaves this side with a channel to
        nowhere, which the regular pings would find only after `ping_timeout`."""
        link = self._links.get(device)
        if self._closed or link is None or link.state is not LinkState.CONNECTED:
            return
        if link._channel is not None:
            self._spawn(self._probe(link, link._channel, timeout), link)

    async def _probe(self, link: Link, channel: RTCDataChannel, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        link._ping_n += 1
        link._ping_sent_at = sent
        self._send_on(link, PingFrame(link._ping_n, sent).encode(), control=True)
        await asyncio.sleep(timeout)
        if link._channel is channel and link._liveness.last_pong < sent:
            self._fail(link, f"no pong within {timeout:g} s of a probe")
            self.nudge(link.peer.device)

    def _attach_channel(self, link: Link, channel: RTCDataChannel) -> None:
        link._channel = channel

        def on_open() -> None:
            self._channel_opened(link, channel)

        def on_close() -> None:
            if link._channel is channel:
                self._fail(link, "data channel closed")

        def on_message(message: str | bytes) -> None:
            if link._channel is channel:
                self._received(link, channel, message)

        channel.on("open", on_open)
        channel.on("close", on_close)
        channel.on("message", on_message)
        if channel.readyState == "open":
            self._channel_opened(link, channel)

    def _channel_opened(self, link: Link, channel: RTCDataChannel) -> None:
        if link._channel is not channel or link.state is LinkState.CONNECTED:
            return
        now = asyncio.get_running_loop().time()
        link.connect_ms = (now - link._attempt_started) * 1000
        link._failures = 0
        link._awaiting_answer = False
        link._liveness = Liveness(now, self._ping_timeout, self._recover_grace)
        if link._watchdog is not None:
            link._watchdog.cancel()
            link._watchdog = None
        self._spawn(self._keepalive(link, channel), link)
        log.info("link to %s open in %.0f ms", short(link.peer.device), link.connect_ms)
        self._set_state(link, LinkState.CONNECTED)

    async def _keepalive(self, link: Link, channel: RTCDataChannel) -> None:
        loop = asyncio.get_running_loop()
        while link._channel is channel:
            verdict = link._liveness.verdict(loop.time())
            if verdict is Verdict.FAILED:
                self._fail(link, f"no pong for {self._ping_timeout + self._recover_grace:g} s")
                return
            if verdict is Verdict.DISCONNECTED and link.state is LinkState.CONNECTED:
                log.info("link to %s disconnected: no pong for %g s; keeping it %g s more",
                         short(link.peer.device), self._ping_timeout, self._recover_grace)
                self._set_state(link, LinkState.DISCONNECTED)
            link._ping_n += 1
            link._ping_sent_at = loop.time()
            self._send_on(link, PingFrame(link._ping_n, link._ping_sent_at).encode(),
                          control=True)
            await asyncio.sleep(self._ping_interval)

    def _received(self, link: Link, channel: RTCDataChannel, message: str | bytes) -> None:
        if not isinstance(message, str):
            log.debug("binary frame from %s ignored", short(link.peer.device))
            return
        if len(message) <= _CONTROL_FRAME_MAX_CHARS and self._control_frame(link, message):
            return
        try:
            self._on_frame(link.peer, message)
        except Exception:
            log.exception("on_frame callback failed")

    def _control_frame(self, link: Link, message: str) -> bool:
        """Handle a ping or pong; return whether `message` was one (see `is_control_frame`)."""
        if not is_control_frame(message):
            return False
        try:
            frame = parse_channel_frame(message)
        except ProtocolError:
            return True
        if isinstance(frame, PingFrame):
            self._send_on(link, frame.answer().encode(), control=True)
        elif not isinstance(frame, PongFrame):
            return True
        elif frame.n == link._ping_n:
            now = asyncio.get_running_loop().time()
            link.rtt_ms = (now - link._ping_sent_at) * 1000
            link._liveness.pong(now)
        elif 0 < frame.n < link._ping_n:
            link._liveness.pong(asyncio.get_running_loop().time())
        else:
            return True
        if link.state is LinkState.DISCONNECTED:
            log.info("link to %s recovered", short(link.peer.device))
            self._set_state(link, LinkState.CONNECTED)
        return True

    def _send_on(self, link: Link, text: str, control: bool = False) -> bool:
        """Send on the link's channel if it is open; pings and pongs (`control`) also go on a
        disconnected link, which they may bring back."""
        channel = link._channel
        usable = link.state is LinkState.CONNECTED or (
            control and link.state is LinkState.DISCONNECTED)
        if not usable or channel is None:
            return False
        if channel.readyState != "open":
            return False
        try:
            channel.send(text)
        except Exception as exc:
            log.warning("could not send to %s: %r", short(link.peer.device), exc)
            return False
        return True
