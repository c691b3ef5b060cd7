"""The agent's rendezvous: a WebSocket listener every agent runs, and the dialer that reaches a
peer's listener when the server cannot introduce the two.

The address (`host:port`) is published in the server's roster through `join`, and every agent
caches the roster, addresses included, in its data dir. An agent that cannot reach the server
dials a peer it knows; the two prove their device keys to each other (`protocol.rendezvous`:
a challenge signed by each side, checked against keys the server vouched for, anything else
refused), and the connection then carries signal relay frames (`protocol.relay`) both ways: the
dialer's offers and answers for the listener itself, and for the rest of the mesh, which the
listener relays over its data channels. So the full mesh forms again without the server.

A session is one authenticated connection to one peer device, dialled or accepted; a newer
session with the same device replaces the older one. WebSocket heartbeats close a session whose
peer died or froze.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from protocol import MAX_FRAME_BYTES, BadSignature, DeviceKey, ProtocolError, b64decode, b64encode
from protocol import verify_signature as verify
from protocol.rendezvous import (
    NONCE_BYTES,
    Challenge,
    Hello,
    Refused,
    Welcome,
    dial_refusal,
    dialer_proof_bytes,
    is_address,
    listener_proof_bytes,
    parse_handshake_frame,
)

from .ice import ice_host_allowed
from .mesh import PeerInfo

log = logging.getLogger("gibberish.agent.rendezvous")

Vouched = Callable[[str], PeerInfo | None]
"""The device's entry if the server vouched for its key, else None."""


@dataclass
class Session:
    """One authenticated rendezvous connection; frames are sent in order by a writer task."""

    peer: PeerInfo
    dialed: bool
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse
    _queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue, repr=False)
    _writer: asyncio.Task[None] | None = field(default=None, repr=False)

    def send(self, text: str) -> bool:
        """Queue one frame; False if the connection is closing."""
        if self.ws.closed:
            return False
        self._queue.put_nowait(text)
        return True

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.info("rendezvous session with %s lost while sending: %r",
                         self.peer.device[:8], exc)
                return


class RendezvousError(Exception):
    """A rendezvous handshake failed; the message says why."""


class Rendezvous:
    """Listens on `host:port` (port 0: a free one, see `address`) and dials peers on request.

    `vouched(device)` decides whom to trust; `on_frame(peer, text)` gets every frame a session
    carries after its handshake; `on_session(peer, up, address)` reports each session opened
    (with the address the dialer says it listens on, "" if unknown) and closed. `server` (host,
    port) is the signaling server's address, which is never dialled (`dial_refusal`).
    """

    def __init__(
        self, *, key: DeviceKey, user: str, room: str, host: str, port: int,
        vouched: Vouched, on_frame: Callable[[PeerInfo, str], None],
        on_session: Callable[[PeerInfo, bool, str], None],
        handshake_timeout: float = 5.0, heartbeat: float = 3.0, max_sessions: int = 64,
        server: tuple[str, int] | None = None,
    ) -> None:
        self._key = key
        self._device = key.device_id
        self._user = user
        self._room = room
        self._host = host
        self._port = port
        self._vouched = vouched
        self._on_frame = on_frame
        self._on_session = on_session
        self._handshake_timeout = handshake_timeout
        self._heartbeat = heartbeat
        self._max_sessions = max_sessions
        self._server = server
        self._sessions: dict[str, Session] = {}
        self._pending = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.refused = 0
        self.dials_refused = 0
        self.address: str | None = None

    @property
    def sessions(self) -> dict[str, Session]:
        """Open sessions by peer device (a copy)."""
        return dict(self._sessions)

    async def start(self) -> str:
        """Start listening; return the address to publish, `host:port`."""
        app = web.Application()
        app.add_routes([web.get("/rendezvous", self._accept)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self._port
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.address = f"{host}:{port}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, connect=self._handshake_timeout))
        return self.address

    def send(self, device: str, text: str) -> bool:
        """Send one frame to `device` if a session with it is open."""
        session = self._sessions.get(device)
        return session is not None and session.send(text)

    async def dial(self, address: str, peer: PeerInfo) -> bool:
        """Open an authenticated session with `peer` at `address`; False (logged) on failure.

        Only an address this agent could itself have published is dialled (`dial_refusal`:
        its own address family, loopback only from loopback, never link-local, metadata or the
        signaling server's address), and never one outside the ICE pin (tests pin everything to
        127.0.0.1). An address taken from a roster is a member's claim, nothing more.
        """
        if self._closed or self._http is None or not is_address(address):
            return False
        refusal = dial_refusal(address, self.address, self._server)
        if refusal is not None:
            self.dials_refused += 1
            log.warning("not dialling %s for %s: %s", address[:64], peer.device[:8], refusal)
            return False
        host = address.rpartition(":")[0].strip("[]")
        if not ice_host_allowed(host):
            log.info("not dialling %s: outside the addresses this agent is pinned to", address)
            return False
        try:
            ws = await self._http.ws_connect(
                f"http://{address}/rendezvous", heartbeat=self._heartbeat,
                max_msg_size=MAX_FRAME_BYTES * 4)
        except (aiohttp.ClientError, OSError) as exc:
            log.info("rendezvous with %s at %s: %r", peer.device[:8], address, exc)
            return False
        try:
            async with asyncio.timeout(self._handshake_timeout):
                await self._dialer_handshake(ws, peer)
        except (RendezvousError, ProtocolError, TimeoutError, aiohttp.ClientError,
                ConnectionError) as exc:
            log.warning("rendezvous with %s at %s failed: %s", peer.device[:8], address, exc)
            await ws.close()
            return False
        session = Session(peer, True, ws)
        task = asyncio.get_running_loop().create_task(self._serve(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _dialer_handshake(self, ws: aiohttp.ClientWebSocketResponse,
                                peer: PeerInfo) -> None:
        challenge = parse_handshake_frame(await _receive_text(ws))
        if not isinstance(challenge, Challenge):
            raise RendezvousError("expected a challenge")
        if challenge.room != self._room or challenge.device != peer.device:
            raise RendezvousError(f"the listener is device {challenge.device[:8]} of room "
                                  f"{challenge.room!r}, not the peer expected")
        nonce = b64encode(secrets.token_bytes(NONCE_BYTES))
        mine = self.address or ""
        proof = self._key.sign(dialer_proof_bytes(self._room, self._device, peer.device,
                                                  challenge.nonce, mine))
        await ws.send_str(Hello(self._user, self._device, mine, nonce, b64encode(proof)).encode())
        answer = parse_handshake_frame(await _receive_text(ws))
        if isinstance(answer, Refused):
            raise RendezvousError(f"refused: {answer.reason}")
        if not isinstance(answer, Welcome):
            raise RendezvousError("expected a welcome")
        try:
            verify(peer.public_key, b64decode(answer.sig),
                   listener_proof_bytes(self._room, peer.device, self._device, nonce))
        except (BadSignature, ValueError) as exc:
            raise RendezvousError(f"the listener's proof does not verify: {exc}") from exc

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=self._heartbeat, max_msg_size=MAX_FRAME_BYTES * 4)
        await ws.prepare(request)
        if self._closed or self._pending + len(self._sessions) >= self._max_sessions:
            await ws.close()
            return ws
        self._pending += 1
        try:
            async with asyncio.timeout(self._handshake_timeout):
                peer, address = await self._listener_handshake(ws)
        except (RendezvousError, ProtocolError) as exc:
            self.refused += 1
            log.warning("refused a rendezvous from %s: %s", request.remote, exc)
            try:
                await ws.send_str(Refused(str(exc)).encode())
            except (ConnectionError, RuntimeError):
                pass
            await ws.close()
            return ws
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            self.refused += 1
            log.info("rendezvous from %s abandoned: %r", request.remote, exc)
            await ws.close()
            return ws
        finally:
            self._pending -= 1
        await self._serve(Session(peer, False, ws), address)
        return ws

    async def _listener_handshake(self, ws: web.WebSocketResponse) -> tuple[PeerInfo, str]:
        nonce = b64encode(secrets.token_bytes(NONCE_BYTES))
        await ws.send_str(Challenge(self._room, self._device, nonce).encode())
        hello = parse_handshake_frame(await _receive_text(ws))
        if not isinstance(hello, Hello):
            raise RendezvousError("expected a hello")
        peer = self._vouched(hello.device)
        if peer is None or hello.device == self._device:
            raise RendezvousError(f"device {hello.device[:8]} has no key the server vouched for")
        if peer.user != hello.user:
            raise RendezvousError(f"device {hello.device[:8]} belongs to {peer.user!r}")
        try:
            verify(peer.public_key, b64decode(hello.sig),
                   dialer_proof_bytes(self._room, hello.device, self._device, nonce,
                                      hello.rendezvous))
        except (BadSignature, ValueError) as exc:
            raise RendezvousError(f"the proof of device {hello.device[:8]} does not verify: "
                                  f"{exc}") from exc
        proof = self._key.sign(listener_proof_bytes(self._room, self._device, hello.device,
                                                    hello.nonce))
        await ws.send_str(Welcome(b64encode(proof)).encode())
        return peer, hello.rendezvous

    async def _serve(self, session: Session, address: str = "") -> None:
        """Run one session until its connection closes."""
        device = session.peer.device
        older = self._sessions.get(device)
        self._sessions[device] = session
        if older is not None:
            await older.ws.close()
        session._writer = asyncio.get_running_loop().create_task(session._write())
        log.info("rendezvous session with %s (%s) open", device[:8],
                 "dialled" if session.dialed else "accepted")
        self._notify(session.peer, True, address)
        try:
            async for message in session.ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        self._on_frame(session.peer, message.data)
                    except Exception:
                        log.exception("handling a rendezvous frame failed")
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            session._writer.cancel()
            if self._sessions.get(device) is session:
                del self._sessions[device]
                log.info("rendezvous session with %s closed", device[:8])
                self._notify(session.peer, False, "")
            if not session.ws.closed:
                await session.ws.close()

    def _notify(self, peer: PeerInfo, up: bool, address: str) -> None:
        try:
            self._on_session(peer, up, address)
        except Exception:
            log.exception("on_session callback failed")

    async def close(self) -> None:
        """Close every session and stop listening."""
        self._closed = True
        for session in list(self._sessions.values()):
            await session.ws.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()


async def _receive_text(ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> str:
    message: Any = await ws.receive()
    if message.type != WSMsgType.TEXT:
        raise RendezvousError("the connection closed during the handshake")
    return str(message.data)
