"""How the mesh makes a connection: offer, answer and trickled candidates, each signed.

Rules kept here:

- Each offer or answer carries the full SDP (aiortc gathers every candidate in
  `setLocalDescription`) and `fp_sig`, the sender's device-key signature of
  `canonical_bytes(FINGERPRINT_DOMAIN, [room, sender_device, receiver_device, fingerprint])`, where
  `fingerprint` is `sdp_fingerprint(sdp)`. The receiver checks it against the roster's public key
  for that device before it answers or accepts an answer, so a signaling server in the middle
  cannot substitute its own DTLS certificate.
- Each offer carries `oid`, an id that grows with every offer a device makes (its clock in
  microseconds, kept increasing), and the answer echoes it. The answering side ignores an offer
  whose `oid` is not above the last one it accepted from that device, and the offering side
  ignores an answer to an offer other than its latest: offers held up in a frozen server or
  relayed by several peers arrive late or twice, and must not tear down a newer connection.
  A payload without `oid` (an older peer) is always taken as new.

`Negotiation` is a part of `peer_agent.mesh.Mesh`, kept in its own module; what it uses of the
rest of the mesh is declared at the top of the class.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

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
    BadSignature,
    DeviceKey,
    InvalidEnvelope,
    b64decode,
    b64encode,
    verify_signature,
)
from protocol.fingerprint import fingerprint_signed_bytes, sdp_fingerprint
from protocol.link_rules import next_offer_id

from .ice import pinned_ice_hosts
from .link import (
    CHANNEL_LABEL,
    Link,
    LinkState,
    PeerInfo,
    SendRoomSignal,
    SignalRefused,
    offer_id,
    short,
)

log = logging.getLogger("peer_agent.mesh")


class Negotiation:
    """The offer, answer and candidate side of the mesh."""

    _key: DeviceKey
    _device: str
    _closed: bool
    _roster: dict[str, PeerInfo]
    _links: dict[str, Link]
    _room_for: Callable[[str], str]
    _send_room_signal: SendRoomSignal
    _ice_servers: list[RTCIceServer]
    _connect_timeout: float
    _answer_timeout: float
    _last_oid: int

    if TYPE_CHECKING:
        # The rest of the mesh (peer_agent.mesh and peer_agent.keepalive).
        def _fail(self, link: Link, reason: str) -> None: ...
        def _refuse(self, link: Link | None, reason: str, device: str) -> None: ...
        def _report_refusal(self, device: str, reason: str) -> None: ...
        def _drop_connection(self, link: Link) -> None: ...
        def _set_state(self, link: Link, state: LinkState) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, None], link: Link) -> asyncio.Task[None]: ...
        def _attach_channel(self, link: Link, channel: RTCDataChannel) -> None: ...

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
                    f"{kind[:20]} from device {short(from_device)}, not in the roster")
            if peer.user != from_user:
                raise SignalRefused(
                    f"{kind[:20]} from {from_user[:40]!r} for device {short(from_device)}, "
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
                            channel.label[:40], short(link.peer.device))
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
            log.info("no answer from %s in %g s: offering again", short(link.peer.device), wait)
            await self._offer(link)

    async def _accept_offer(self, link: Link, payload: dict[str, Any], room: str) -> None:
        if link.offerer:
            raise SignalRefused(
                f"offer from {short(link.peer.device)}, which waits for our offer (offer rule)"
            )
        oid = offer_id(payload)
        if oid is not None and link._accepted_oid is not None and oid <= link._accepted_oid:
            log.info("offer %d from %s is older than one already taken (%d); ignored",
                     oid, short(link.peer.device), link._accepted_oid)
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
                    f"offer from {short(link.peer.device)} is unusable: {exc!r}") from exc
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
        oid = offer_id(payload)
        if oid is not None and (oid != link._offer_oid or not link._awaiting_answer):
            log.info("answer from %s to offer %d, not to the offer pending; ignored",
                     short(link.peer.device), oid)
            return
        if not link._awaiting_answer or pc is None:
            raise SignalRefused(f"answer from {short(link.peer.device)} with no offer pending")
        sdp = self._verified_sdp(link, payload, "answer", room)
        link._awaiting_answer = False
        link._unanswered = 0
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            if link._pc is pc:
                raise SignalRefused(
                    f"answer from {short(link.peer.device)} is unusable: {exc!r}") from exc

    async def _add_candidate(self, link: Link, payload: dict[str, Any]) -> None:
        # A trickled candidate (browsers trickle; aiortc never does). Candidates outside the ICE
        # pin are dropped by peer_agent.ice, on the same path as those inside an SDP.
        pc = link._pc
        if pc is None or pc.remoteDescription is None:
            log.debug("candidate from %s with no negotiation under way; ignored",
                      short(link.peer.device))
            return
        text = payload.get("candidate")
        mid = payload.get("sdpMid")
        index = payload.get("sdpMLineIndex")
        if (not isinstance(text, str) or not isinstance(mid, str | None)
                or not (index is None or (isinstance(index, int) and not isinstance(index, bool)))
                or (mid is None and index is None)):
            self._report_refusal(link.peer.device,
                                 f"malformed candidate from {short(link.peer.device)}")
            return
        text = text.strip().removeprefix("a=").removeprefix("candidate:")
        candidate: RTCIceCandidate | None = None
        if text:  # an empty candidate is a browser's end-of-candidates
            try:
                candidate = candidate_from_sdp(text)
            except (AssertionError, ValueError, IndexError):
                self._report_refusal(link.peer.device,
                                     f"unparsable candidate from {short(link.peer.device)}")
                return
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = index
        try:
            await pc.addIceCandidate(candidate)
        except Exception as exc:
            log.warning("candidate from %s not added: %r", short(link.peer.device), exc)

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
        peer = short(link.peer.device)
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
