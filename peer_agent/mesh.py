"""The agent's WebRTC mesh: one aiortc peer connection and one data channel per peer device.

The mesh owns every `RTCPeerConnection`, its link state and the tasks that keep it alive. It speaks
to the signaling server only through the `send_signal` callable it is given and `handle_signal`,
and hands text frames to `on_frame` as they arrive. This module is the registry of links (the
roster in, links opened, failed, retried and closed); how a connection is negotiated and signed
is in `peer_agent.negotiation`, the data channel and its ping and pong in
`peer_agent.keepalive`, the per-link state in `peer_agent.link`.

Rules it keeps:

- Offer rule: of each pair of devices, the one with the smaller device id offers (ids are lower-case
  hex of equal length, so string order is numeric order); the other waits for the offer. Offers
  never cross, and only the offering side retries.
- A failed link is retried by the offering side with exponential backoff and jitter, each time
  with a fresh peer connection; the answering side accepts the new offer in place of the old
  connection. Leaving the roster closes a link for good.
- `nudge` makes the offering side offer at once, skipping its backoff: the agent calls it when
  the peer reappears (the server announces it, or it says hello through a relay).
- Offers and answers carry a signed DTLS fingerprint and an offer id (`peer_agent.negotiation`);
  pings find a link that stopped answering (`peer_agent.keepalive`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiortc import RTCIceServer, RTCPeerConnection

from protocol import MAX_FRAME_BYTES, DeviceKey, FrameTooLarge
from protocol.link_rules import offers_to, retry_delay

from .keepalive import Keepalive
from .link import (
    CHANNEL_LABEL,
    SIGNAL_KINDS,
    Link,
    LinkState,
    PeerInfo,
    SendRoomSignal,
    SendSignal,
    SignalRefused,
    device_matches_key,
    short,
)
from .negotiation import Negotiation

__all__ = ["CHANNEL_LABEL", "SIGNAL_KINDS", "Link", "LinkState", "Mesh", "PeerInfo",
           "SendRoomSignal", "SendSignal", "SignalRefused"]

log = logging.getLogger(__name__)

SEND_HIGH_WATER = 1 << 20
"""Bytes a bulk sender lets queue on a data channel before it waits for them to drain: at
loopback speed a few milliseconds of data, so a ping is never far behind."""


class Mesh(Negotiation, Keepalive):
    """Peer connections to every other device of one room, kept open and healed.

    Call every method from the agent's event loop. `on_frame` receives each text frame from a peer
    as a raw string (the caller parses and verifies it); `on_link` receives every link state
    change; `on_refused(device, reason)` each signal refused (forged, malformed or unexpected).
    `close()` stops every connection and task.
    """

    def __init__(
        self,
        *,
        key: DeviceKey,
        user: str,
        room: str | None = None,
        send_signal: SendSignal | None = None,
        room_for: Callable[[str], str] | None = None,
        send_room_signal: SendRoomSignal | None = None,
        on_frame: Callable[[PeerInfo, str], None],
        on_link: Callable[[PeerInfo, LinkState], None],
        on_refused: Callable[[str, str], None] | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        retry_base: float = 0.5,
        retry_max: float = 15.0,
        ping_interval: float = 2.0,
        ping_timeout: float = 6.0,
        recover_grace: float = 10.0,
        connect_timeout: float = 10.0,
        answer_timeout: float = 1.0,
    ) -> None:
        self._key = key
        self._device = key.device_id
        self._user = user
        # One room (`room`, `send_signal`), or every room the device is in: `room_for(device)`
        # names a room shared with `device` to signal it through (`send_room_signal`).
        if room_for is None:
            if room is None or send_signal is None:
                raise TypeError("give room and send_signal, or room_for and send_room_signal")
            self._room_for: Callable[[str], str] = lambda _device: room
        else:
            self._room_for = room_for
        if send_room_signal is None:
            if send_signal is None:
                raise TypeError("give send_signal or send_room_signal")
            one_room_send = send_signal

            async def send_room_signal(_room: str, to: str, kind: str,
                                       payload: dict[str, Any]) -> None:
                await one_room_send(to, kind, payload)

        self._send_room_signal: SendRoomSignal = send_room_signal
        self._on_frame = on_frame
        self._on_link = on_link
        self._on_refused = on_refused
        # Never aiortc's default configuration: it points at a public STUN server.
        self._ice_servers = [RTCIceServer(**server) for server in ice_servers or []]
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._recover_grace = recover_grace
        self._connect_timeout = connect_timeout
        self._answer_timeout = answer_timeout
        self._roster: dict[str, PeerInfo] = {}
        self._links: dict[str, Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing_pcs: set[asyncio.Task[None]] = set()
        self._refused = 0
        self._closed = False
        self._last_oid = 0

    @property
    def device(self) -> str:
        """This device's id."""
        return self._device

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        """The STUN and TURN servers (RTCIceServer fields) for connections made from now on.

        None is used while ICE is pinned (`peer_agent.ice`). Setting raises TypeError for a field
        RTCIceServer does not have.
        """
        return [
            {k: v for k, v in vars(server).items() if v is not None}
            for server in self._ice_servers
        ]

    @ice_servers.setter
    def ice_servers(self, servers: list[dict[str, Any]]) -> None:
        self._ice_servers = [RTCIceServer(**server) for server in servers]

    @property
    def links(self) -> dict[str, Link]:
        """The links to the roster's devices, by device id (a copy of the mapping)."""
        return dict(self._links)

    @property
    def refused_signals(self) -> int:
        """How many signals were refused (unknown peer, bad signature, unexpected kind)."""
        return self._refused

    def update_roster(self, peers: Iterable[PeerInfo]) -> None:
        """Make the mesh match the room's roster: link new devices, close removed ones.

        An entry whose device id does not derive from its public key is skipped. A device whose
        entry changed (another user or key) is closed and linked afresh.
        """
        if self._closed:
            return
        roster: dict[str, PeerInfo] = {}
        for peer in peers:
            if peer.device == self._device:
                continue
            if not device_matches_key(peer):
                log.warning("roster entry for device %s of %r does not match its key; skipped",
                            short(peer.device), peer.user)
                continue
            roster[peer.device] = peer
        for device, known in list(self._roster.items()):
            if roster.get(device) != known:
                self._close_link(device)
        for device, peer in roster.items():
            if device not in self._roster:
                self._roster[device] = peer
                self._open_link(peer)

    def nudge(self, device: str, *, force: bool = False) -> bool:
        """Offer to `device` now if this side offers and the link is down, skipping the retry
        backoff; True if an offer was started. An offer sent less than a second ago is left to
        finish, unless `force` says it went nowhere (no path could carry it)."""
        link = self._links.get(device)
        if self._closed or link is None or not link.offerer or link.state is LinkState.CONNECTED:
            return False
        now = asyncio.get_running_loop().time()
        if (not force and link.state is LinkState.CONNECTING
                and now - link._attempt_started < 1.0):
            return False
        link._failures = 0
        self._spawn(self._offer(link), link)
        return True

    def peer_left(self, device: str) -> None:
        """Close the link to `device` and forget it, with no retry, until the roster lists it."""
        self._close_link(device)

    def send(self, device: str, text: str) -> bool:
        """Send one text frame to `device`; False if its channel is not open.

        Raises FrameTooLarge, before sending anything, above MAX_FRAME_BYTES.
        """
        _check_frame_size(text)
        link = self._links.get(device)
        return link is not None and self._send_on(link, text)

    async def writable(self, device: str, high: int = SEND_HIGH_WATER,
                       timeout: float = 30.0) -> bool:
        """Wait until the open data channel to `device` queues less than `high` bytes; False
        if the link closes or changes meanwhile, or nothing drains within `timeout`. Bulk
        senders (anti-entropy) wait here between frames, so a long catch-up neither fills
        memory nor queues the pings seconds behind it."""
        link = self._links.get(device)
        if link is None or link._channel is None or link._channel.readyState != "open":
            return False
        channel = link._channel
        if channel.bufferedAmount < high:
            return True
        drained = asyncio.Event()
        channel.bufferedAmountLowThreshold = high // 2
        channel.once("bufferedamountlow", drained.set)
        channel.once("close", drained.set)
        try:
            async with asyncio.timeout(timeout):
                await drained.wait()
        except TimeoutError:
            return False
        return (channel.readyState == "open" and self._links.get(device) is link
                and link._channel is channel)

    def broadcast(self, text: str) -> list[str]:
        """Send one text frame to every connected device; return the devices it was sent to.

        Raises FrameTooLarge, before sending anything, above MAX_FRAME_BYTES.
        """
        _check_frame_size(text)
        return [device for device, link in self._links.items() if self._send_on(link, text)]

    async def close(self) -> None:
        """Close every peer connection and cancel every task; the mesh is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        for device in list(self._links):
            self._close_link(device)
        self._roster.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        closing = list(self._closing_pcs)
        try:
            async with asyncio.timeout(5.0):
                await asyncio.gather(*closing, return_exceptions=True)
        except TimeoutError:
            log.warning("peer connections did not close within 5 s")
            for task in closing:
                task.cancel()
            await asyncio.gather(*closing, return_exceptions=True)

    # Links.

    def _open_link(self, peer: PeerInfo) -> None:
        link = Link(peer=peer, state=LinkState.CONNECTING,
                    offerer=offers_to(self._device, peer.device))
        self._links[peer.device] = link
        self._notify(link)
        if link.offerer:
            self._spawn(self._offer(link), link)

    def _close_link(self, device: str) -> None:
        self._roster.pop(device, None)
        link = self._links.pop(device, None)
        if link is None:
            return
        self._drop_connection(link)
        self._set_state(link, LinkState.CLOSED)

    def _fail(self, link: Link, reason: str) -> None:
        """Mark the link failed and drop its connection; the offering side schedules a retry."""
        if self._closed or self._links.get(link.peer.device) is not link:
            return
        if link.state is LinkState.FAILED and link._pc is None:
            return
        log.info("link to %s failed: %s", short(link.peer.device), reason)
        self._drop_connection(link)
        link._failures += 1
        self._set_state(link, LinkState.FAILED)
        if link.offerer:
            delay = retry_delay(link._failures, self._retry_base, self._retry_max,
                                random.random())
            self._spawn(self._retry(link, delay), link)

    async def _retry(self, link: Link, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._links.get(link.peer.device) is link and link.state is LinkState.FAILED:
            await self._offer(link)

    def _drop_connection(self, link: Link) -> None:
        current = asyncio.current_task()
        for task in list(link._tasks):
            if task is not current:
                task.cancel()
        pc, link._pc, link._channel, link._watchdog = link._pc, None, None, None
        link._awaiting_answer = False
        if pc is not None:
            task = asyncio.get_running_loop().create_task(_close_pc(pc))
            self._closing_pcs.add(task)
            task.add_done_callback(self._closing_pcs.discard)

    def _set_state(self, link: Link, state: LinkState) -> None:
        if link.state is state:
            return
        link.state = state
        self._notify(link)

    def _notify(self, link: Link) -> None:
        try:
            self._on_link(link.peer, link.state)
        except Exception:
            log.exception("on_link callback failed")

    def _refuse(self, link: Link | None, reason: str, device: str) -> None:
        self._report_refusal(device, reason)
        if link is not None and link.state is not LinkState.CONNECTED:
            self._fail(link, f"refused a signal: {reason}")

    def _report_refusal(self, device: str, reason: str) -> None:
        """Count, log and report a refused signal; the link is left as it is."""
        self._refused += 1
        log.warning("signal refused: %s", reason)
        if self._on_refused is not None:
            try:
                self._on_refused(device[:64], reason)
            except Exception:
                log.exception("on_refused callback failed")

    # Tasks.

    def _spawn(self, coro: Coroutine[Any, Any, None], link: Link) -> asyncio.Task[None]:
        """Run `coro` as a task of `link`, cancelled when its connection is dropped."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        link._tasks.add(task)
        task.add_done_callback(self._task_done)
        task.add_done_callback(link._tasks.discard)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mesh task failed", exc_info=task.exception())


async def _close_pc(pc: RTCPeerConnection) -> None:
    try:
        await pc.close()
    except Exception as exc:
        log.debug("closing a peer connection failed: %r", exc)


def _check_frame_size(text: str) -> None:
    size = len(text) if len(text) > MAX_FRAME_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(
            f"frame is too large: at most {MAX_FRAME_BYTES} bytes allowed, got {size} or more"
        )
