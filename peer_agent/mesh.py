"""The agent's WebRTC mesh: one aiortc peer connection and one data channel per device of the room.

The mesh owns every `RTCPeerConnection`, its link state and the tasks that keep it alive. It speaks
to the signaling server only through the `send_signal` callable it is given and `handle_signal`,
and hands text frames to `on_frame` as they arrive.

Rules it keeps:

- Offer rule: of each pair of devices, the one with the smaller device id offers (ids are lower-case
  hex of equal length, so string order is numeric order); the other waits for the offer. Offers
  never cross, and only the offering side retries.
- Each offer or answer carries the full SDP (aiortc gathers every candidate in
  `setLocalDescription`) and `fp_sig`, the sender's device-key signature of
  `canonical_bytes(FINGERPRINT_DOMAIN, [room, sender_device, receiver_device, fingerprint])`, where
  `fingerprint` is `sdp_fingerprint(sdp)`. The receiver checks it against the roster's public key
  for that device before it answers or accepts an answer, so a signaling server in the middle
  cannot substitute its own DTLS certificate.
- A link is CONNECTED while its data channel is open. A failed link is retried by the offering
  side with exponential backoff and jitter, each time with a fresh peer connection; the answering
  side accepts the new offer in place of the old connection. Leaving the roster closes a link for
  good.
- Each offer carries `oid`, an id that grows with every offer a device makes (its clock in
  microseconds, kept increasing), and the answer echoes it. The answering side ignores an offer
  whose `oid` is not above the last one it accepted from that device, and the offering side
  ignores an answer to an offer other than its latest: offers held up in a frozen server or
  relayed by several peers arrive late or twice, and must not tear down a newer connection.
  A payload without `oid` (an older peer) is always taken as new.
- `nudge` makes the offering side offer at once, skipping its backoff: the agent calls it when
  the peer reappears (the server announces it, or it says hello through a relay).
- Every `ping_interval` each side sends `{"t":"ping","n":..,"at":..}` and answers pings with
  `{"t":"pong",..}`; these frames stay inside the mesh. They give `Link.rtt_ms`. A link with no
  pong for `ping_timeout` is DISCONNECTED: its connection is kept and pinged, only pings and pongs
  travel on it, and the first pong makes it CONNECTED again (the agent then compares version
  vectors). After `recover_grace` more without a pong it has FAILED and is retried with a fresh
  connection (`protocol/link_rules.py`; aiortc 1.16 cannot restart ICE in place).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from protocol import (
    MAX_FRAME_BYTES,
    BadSignature,
    DeviceKey,
    FrameTooLarge,
    InvalidEnvelope,
    ProtocolError,
    b64decode,
    b64encode,
    device_id_for,
    verify_signature,
)
from protocol.channel import PingFrame, PongFrame, is_control_frame, parse_channel_frame
from protocol.fingerprint import fingerprint_signed_bytes, sdp_fingerprint
from protocol.limits import MAX_SAFE_INTEGER
from protocol.link_rules import Liveness, Verdict, next_offer_id, offers_to, retry_delay
from protocol.links import LinkPath

from .ice import pinned_ice_hosts
from .link_path import selected_path

log = logging.getLogger(__name__)

CHANNEL_LABEL = "gibberish"

SEND_HIGH_WATER = 1 << 20
"""Bytes a bulk sender lets queue on a data channel before it waits for them to drain: at
loopback speed a few milliseconds of data, so a ping is never far behind."""

SIGNAL_KINDS = ("offer", "answer", "candidate")

# Ping and pong frames are a few dozen bytes; longer frames are never parsed by the mesh.
_CONTROL_FRAME_MAX_CHARS = 256


class LinkState(StrEnum):
    """Where the link to one peer device stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class PeerInfo:
    """A device of the room as the server's roster lists it."""

    user: str
    device: str
    public_key: str


@dataclass
class Link:
    """The mesh's view of its connection to one peer device.

    `attempts` counts the offers made (offering side) or accepted (answering side) for this link;
    `connect_ms` is how long the last successful attempt took to open the data channel.
    """

    peer: PeerInfo
    state: LinkState
    rtt_ms: float | None = None
    attempts: int = 0
    offerer: bool = False
    connect_ms: float | None = None
    _pc: RTCPeerConnection | None = field(default=None, init=False, repr=False)
    _channel: RTCDataChannel | None = field(default=None, init=False, repr=False)
    _awaiting_answer: bool = field(default=False, init=False, repr=False)
    _unanswered: int = field(default=0, init=False, repr=False)
    _attempt_started: float = field(default=0.0, init=False, repr=False)
    _failures: int = field(default=0, init=False, repr=False)
    _ping_n: int = field(default=0, init=False, repr=False)
    _ping_sent_at: float = field(default=0.0, init=False, repr=False)
    _liveness: Liveness = field(default_factory=lambda: Liveness(0.0), init=False, repr=False)
    _watchdog: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _offer_oid: int | None = field(default=None, init=False, repr=False)
    _accepted_oid: int | None = field(default=None, init=False, repr=False)
    # The room the current offer and answer are signed for and travel through: the offerer
    # picks one both share, the answerer answers in the offer's room.
    _signal_room: str | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> LinkPath | None:
        """Which way the link goes (its nominated ICE candidate pair), while it is connected."""
        return selected_path(self._pc) if self.state is LinkState.CONNECTED else None


SendSignal = Callable[[str, str, dict[str, Any]], Awaitable[None]]
SendRoomSignal = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""`(room, to, kind, payload)`: signal `to` through the room `room` (the server's signal needs
a room both ends are in)."""
"""Send a signal through the server: (to_device, kind, payload), kind in SIGNAL_KINDS."""


class SignalRefused(ProtocolError):
    """A signal was refused: unknown sender, bad fingerprint signature or unexpected kind."""

    code = "signal_refused"


class Mesh:
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
            if not _device_matches_key(peer):
                log.warning("roster entry for device %s of %r does not match its key; skipped",
                            _short(peer.device), peer.user)
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

    def peer_left(self, device: str) -> None:
        """Close the link to `device` and forget it, with no retry, until the roster lists it."""
        self._close_link(device)

    async def handle_signal(
        self, from_user: str, from_device: str, kind: str, payload: dict[str, Any],
        room: str | None = None,
    ) -> None:
        """Act on a signal relayed by the server (through `room`, when the mesh serves several
        rooms); refuse (and log) anything not to be trusted.

        Never raises for bad input: a refused offer or answer is not answered and marks a link
        that is not connected as failed; an established link is left alone.
        """
        if self._closed:
            return
        peer = self._roster.get(from_device)
        link = self._links.get(from_device)
        try:
            if peer is None or link is None:
                raise SignalRefused(
                    f"{kind[:20]} from device {_short(from_device)}, not in the roster")
            if peer.user != from_user:
                raise SignalRefused(
                    f"{kind[:20]} from {from_user[:40]!r} for device {_short(from_device)}, "
                    f"which the roster gives to {peer.user!r}"
                )
            async with link._lock:
                if self._links.get(from_device) is not link:
                    return
                if kind == "offer":
                    await self._accept_offer(link, payload, room or self._room_for(from_device))
                elif kind == "answer":
                    await self._accept_answer(link, payload, room or self._room_for(from_device))
                elif kind == "candidate":
                    await self._add_candidate(link, payload)
                else:
                    raise SignalRefused(f"unknown signal kind {kind[:20]!r}")
        except SignalRefused as exc:
            self._refuse(link, exc.message, from_device)
        except Exception as exc:
            log.exception("handling a %s signal failed", kind[:20])
            self._refuse(link, f"{kind[:20]} could not be handled: {exc!r}", from_device)

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
        log.info("link to %s failed: %s", _short(link.peer.device), reason)
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

    # Offer and answer.

    def _new_pc(self, link: Link) -> RTCPeerConnection:
        # While ICE is pinned (tests), STUN and TURN servers would be addresses outside the pin.
        servers = list(self._ice_servers) if pinned_ice_hosts() is None else []
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        link._pc = pc
        link._attempt_started = asyncio.get_running_loop().time()
        link.attempts += 1

        def on_state() -> None:
            if link._pc is pc and pc.connectionState in ("failed", "closed"):
                self._fail(link, f"peer connection {pc.connectionState}")

        def on_datachannel(channel: RTCDataChannel) -> None:
            if link._pc is not pc:
                return
            if channel.label != CHANNEL_LABEL or link._channel is not None:
                log.warning("ignoring extra data channel %r from %s",
                            channel.label[:40], _short(link.peer.device))
                return
            self._attach_channel(link, channel)

        pc.on("connectionstatechange", on_state)
        pc.on("datachannel", on_datachannel)
        link._watchdog = self._spawn(self._watch_connect(link, pc), link)
        return pc

    async def _offer(self, link: Link) -> None:
        self._drop_connection(link)
        self._set_state(link, LinkState.CONNECTING)
        pc: RTCPeerConnection | None = None
        try:
            pc = self._new_pc(link)
            self._attach_channel(link, pc.createDataChannel(CHANNEL_LABEL, ordered=True))
            await pc.setLocalDescription(await pc.createOffer())
            if link._pc is not pc:
                return
            link._awaiting_answer = True
            link._offer_oid = self._next_oid()
            link._signal_room = self._room_for(link.peer.device)
            await self._signal(link, "offer",
                               self._signed_description(pc, link, link._offer_oid))
            if link._pc is pc:
                wait = min(self._connect_timeout,
                           self._answer_timeout * 2.0 ** link._unanswered)
                self._spawn(self._await_answer(link, pc, wait), link)
        except Exception as exc:
            if link._pc is pc:
                self._fail(link, f"could not send an offer: {exc!r}")

    async def _await_answer(self, link: Link, pc: RTCPeerConnection, wait: float) -> None:
        """Offer again at once if no answer came within `wait`: an offer can be lost (sent
        before the server took this side's join, to a peer not yet listening), and waiting out
        the connect time-out would stall the pair for seconds. The wait doubles with each
        unanswered offer, so a slow answerer is not offered over and over."""
        await asyncio.sleep(wait)
        if link._pc is pc and link._awaiting_answer and self._links.get(link.peer.device) is link:
            link._unanswered += 1
            log.info("no answer from %s in %g s: offering again", _short(link.peer.device), wait)
            await self._offer(link)

    async def _accept_offer(self, link: Link, payload: dict[str, Any], room: str) -> None:
        if link.offerer:
            raise SignalRefused(
                f"offer from {_short(link.peer.device)}, which waits for our offer (offer rule)"
            )
        oid = _oid(payload)
        if oid is not None and link._accepted_oid is not None and oid <= link._accepted_oid:
            log.info("offer %d from %s is older than one already taken (%d); ignored",
                     oid, _short(link.peer.device), link._accepted_oid)
            return
        sdp = self._verified_sdp(link, payload, "offer", room)
        link._signal_room = room
        if oid is not None:
            link._accepted_oid = oid
        self._drop_connection(link)
        self._set_state(link, LinkState.CONNECTING)
        pc = self._new_pc(link)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            if link._pc is pc:
                raise SignalRefused(
                    f"offer from {_short(link.peer.device)} is unusable: {exc!r}") from exc
            return
        if link._pc is not pc:
            return
        try:
            await self._signal(link, "answer", self._signed_description(pc, link, oid))
        except Exception as exc:
            if link._pc is pc:
                self._fail(link, f"could not send an answer: {exc!r}")

    async def _accept_answer(self, link: Link, payload: dict[str, Any], room: str) -> None:
        pc = link._pc
        oid = _oid(payload)
        if oid is not None and (oid != link._offer_oid or not link._awaiting_answer):
            log.info("answer from %s to offer %d, not to the offer pending; ignored",
                     _short(link.peer.device), oid)
            return
        if not link._awaiting_answer or pc is None:
            raise SignalRefused(f"answer from {_short(link.peer.device)} with no offer pending")
        sdp = self._verified_sdp(link, payload, "answer", room)
        link._awaiting_answer = False
        link._unanswered = 0
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            if link._pc is pc:
                raise SignalRefused(
                    f"answer from {_short(link.peer.device)} is unusable: {exc!r}") from exc

    async def _add_candidate(self, link: Link, payload: dict[str, Any]) -> None:
        # A trickled candidate (browsers trickle; aiortc never does). Candidates outside the ICE
        # pin are dropped by peer_agent.ice, on the same path as those inside an SDP.
        pc = link._pc
        if pc is None or pc.remoteDescription is None:
            log.debug("candidate from %s with no negotiation under way; ignored",
                      _short(link.peer.device))
            return
        text = payload.get("candidate")
        mid = payload.get("sdpMid")
        index = payload.get("sdpMLineIndex")
        if (not isinstance(text, str) or not isinstance(mid, str | None)
                or not (index is None or (isinstance(index, int) and not isinstance(index, bool)))
                or (mid is None and index is None)):
            self._report_refusal(link.peer.device,
                                 f"malformed candidate from {_short(link.peer.device)}")
            return
        text = text.strip().removeprefix("a=").removeprefix("candidate:")
        candidate: RTCIceCandidate | None = None
        if text:  # an empty candidate is a browser's end-of-candidates
            try:
                candidate = candidate_from_sdp(text)
            except (AssertionError, ValueError, IndexError):
                self._report_refusal(link.peer.device,
                                     f"unparsable candidate from {_short(link.peer.device)}")
                return
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = index
        try:
            await pc.addIceCandidate(candidate)
        except Exception as exc:
            log.warning("candidate from %s not added: %r", _short(link.peer.device), exc)

    def _signed_description(self, pc: RTCPeerConnection, link: Link,
                            oid: int | None) -> dict[str, Any]:
        description = pc.localDescription
        fingerprint = sdp_fingerprint(description.sdp)
        signed = fingerprint_signed_bytes(self._link_room(link), self._device, link.peer.device,
                                          fingerprint)
        payload: dict[str, Any] = {
            "sdp": description.sdp,
            "type": description.type,
            "fp_sig": b64encode(self._key.sign(signed)),
        }
        if oid is not None:
            payload["oid"] = oid
        return payload

    def _next_oid(self) -> int:
        # Wall-clock microseconds, so ids keep growing across restarts of this device and stay
        # below 2^53 for JavaScript peers; kept strictly increasing within the process whatever
        # the clock does.
        self._last_oid = next_offer_id(self._last_oid, time.time_ns() // 1000)
        return self._last_oid

    def _link_room(self, link: Link) -> str:
        return link._signal_room or self._room_for(link.peer.device)

    def _verified_sdp(self, link: Link, payload: dict[str, Any], kind: str, room: str) -> str:
        sdp, fp_sig = payload.get("sdp"), payload.get("fp_sig")
        kind_in_payload = payload.get("type")
        peer = _short(link.peer.device)
        if not isinstance(sdp, str) or not isinstance(fp_sig, str) or kind_in_payload != kind:
            raise SignalRefused(f"malformed {kind} from {peer}")
        try:
            fingerprint = sdp_fingerprint(sdp)
            signature = b64decode(fp_sig)
            verify_signature(
                link.peer.public_key,
                signature,
                fingerprint_signed_bytes(room, link.peer.device, self._device, fingerprint),
            )
        except (ValueError, BadSignature, InvalidEnvelope) as exc:
            raise SignalRefused(
                f"{kind} from {peer} has no valid fingerprint signature: {exc}") from exc
        return sdp

    async def _signal(self, link: Link, kind: str, payload: dict[str, Any]) -> None:
        await self._send_room_signal(self._link_room(link), link.peer.device, kind, payload)

    async def _watch_connect(self, link: Link, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(self._connect_timeout)
        if link._pc is pc and link.state is LinkState.CONNECTING:
            self._fail(link, f"no open channel after {self._connect_timeout:g} s")

    # The data channel.

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
        log.info("link to %s open in %.0f ms", _short(link.peer.device), link.connect_ms)
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
                         _short(link.peer.device), self._ping_timeout, self._recover_grace)
                self._set_state(link, LinkState.DISCONNECTED)
            link._ping_n += 1
            link._ping_sent_at = loop.time()
            self._send_on(link, PingFrame(link._ping_n, link._ping_sent_at).encode(),
                          control=True)
            await asyncio.sleep(self._ping_interval)

    def _received(self, link: Link, channel: RTCDataChannel, message: str | bytes) -> None:
        if not isinstance(message, str):
            log.debug("binary frame from %s ignored", _short(link.peer.device))
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
            log.info("link to %s recovered", _short(link.peer.device))
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
            log.warning("could not send to %s: %r", _short(link.peer.device), exc)
            return False
        return True

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


def _oid(payload: dict[str, Any]) -> int | None:
    oid = payload.get("oid")
    if isinstance(oid, int) and not isinstance(oid, bool) and 0 < oid <= MAX_SAFE_INTEGER:
        return oid
    return None


def _device_matches_key(peer: PeerInfo) -> bool:
    try:
        return device_id_for(b64decode(peer.public_key)) == peer.device
    except ValueError:
        return False


def _short(device: str) -> str:
    return device[:8]
