"""An in-memory signal bus that stands in for the signaling server, and a room of real meshes.

The bus relays offers, answers and candidates between `Mesh` objects of one process, in order,
as the server's Socket.IO relay would; it records every signal and can tamper with them to play a
man in the middle. The meshes themselves are real: aiortc peer connections over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from peer_agent.mesh import LinkState, Mesh, PeerInfo
from protocol import DeviceKey

T = TypeVar("T")

SendSignal = Callable[[str, str, dict[str, Any]], Coroutine[Any, Any, None]]
# (from_device, to_device, kind, payload) -> the signals to deliver instead (none drops it).
Tamper = Callable[[str, str, str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Signal:
    sender: str
    to: str
    kind: str
    payload: dict[str, Any]


class SignalBus:
    """Relays signals between meshes registered by device id; signals to others are dropped."""

    def __init__(self) -> None:
        self.meshes: dict[str, tuple[str, Mesh]] = {}
        self.sent: list[Signal] = []
        self.tamper: Tamper | None = None
        self._queue: asyncio.Queue[Signal] = asyncio.Queue()
        self._relay = asyncio.get_running_loop().create_task(self._deliver())

    def register(self, user: str, mesh: Mesh) -> None:
        self.meshes[mesh.device] = (user, mesh)

    def unregister(self, device: str) -> None:
        self.meshes.pop(device, None)

    def sender(self, device: str) -> SendSignal:
        async def send_signal(to: str, kind: str, payload: dict[str, Any]) -> None:
            self.sent.append(Signal(device, to, kind, payload))
            signals = [(kind, payload)]
            if self.tamper is not None:
                signals = self.tamper(device, to, kind, dict(payload))
            for kind_out, payload_out in signals:
                self._queue.put_nowait(Signal(device, to, kind_out, payload_out))

        return send_signal

    def count(self, kind: str, sender: str | None = None, to: str | None = None) -> int:
        return sum(
            1 for s in self.sent
            if s.kind == kind and sender in (None, s.sender) and to in (None, s.to)
        )

    async def _deliver(self) -> None:
        while True:
            signal = await self._queue.get()
            sender = self.meshes.get(signal.sender)
            receiver = self.meshes.get(signal.to)
            if sender is None or receiver is None:
                continue
            await receiver[1].handle_signal(sender[0], signal.sender, signal.kind, signal.payload)

    async def close(self) -> None:
        self._relay.cancel()
        await asyncio.gather(self._relay, return_exceptions=True)


@dataclass
class Member:
    """One device of the room: its key, its mesh, and what its callbacks saw."""

    user: str
    key: DeviceKey
    mesh: Mesh
    frames: list[tuple[str, str]] = field(default_factory=list)  # (from_device, text)
    states: list[tuple[str, LinkState]] = field(default_factory=list)  # (device, state)

    @property
    def device(self) -> str:
        return self.key.device_id

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.user, self.device, self.key.public_key_b64)

    def state_of(self, other: Member) -> LinkState | None:
        link = self.mesh.links.get(other.device)
        return None if link is None else link.state

    def saw(self, other: Member, state: LinkState) -> bool:
        return (other.device, state) in self.states

    def texts_from(self, other: Member) -> list[str]:
        return [text for device, text in self.frames if device == other.device]


class Room:
    """Meshes of one room joined through one SignalBus; `async with` closes them all."""

    def __init__(self, **mesh_options: Any) -> None:
        self.mesh_options: dict[str, Any] = {
            "retry_base": 0.05, "retry_max": 0.5, "connect_timeout": 2.0, **mesh_options,
        }
        self.members: list[Member] = []
        self.bus: SignalBus

    async def __aenter__(self) -> Room:
        self.bus = SignalBus()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for member in self.members:
            await member.mesh.close()
        await self.bus.close()

    def join(self, user: str, key: DeviceKey | None = None, **mesh_options: Any) -> Member:
        """Start a mesh for a device (a new one, or a returning one given its key)."""
        key = key or DeviceKey.generate()
        frames: list[tuple[str, str]] = []
        states: list[tuple[str, LinkState]] = []
        mesh = Mesh(
            key=key, user=user, room="lobby", send_signal=self.bus.sender(key.device_id),
            on_frame=lambda peer, text: frames.append((peer.device, text)),
            on_link=lambda peer, state: states.append((peer.device, state)),
            **{**self.mesh_options, **mesh_options},
        )
        member = Member(user, key, mesh, frames, states)
        self.bus.register(user, mesh)
        self.members.append(member)
        return member

    def roster(self) -> list[PeerInfo]:
        latest = {m.device: m.info for m in self.members}
        return list(latest.values())

    def share_roster(self, *members: Member) -> None:
        """Hand the room's roster to `members` (all by default), as the server would."""
        for member in members or tuple(self.members):
            member.mesh.update_roster(self.roster())

    def fully_connected(self, members: list[Member] | None = None) -> bool:
        members = members or self.members
        return all(
            a.state_of(b) is LinkState.CONNECTED for a in members for b in members if a is not b
        )


def sorted_keys(n: int) -> list[DeviceKey]:
    """Fresh device keys in device-id order, so a test knows which side offers."""
    return sorted((DeviceKey.generate() for _ in range(n)), key=lambda k: k.device_id)


def run(coro: Callable[[], Coroutine[Any, Any, None]], timeout: float = 15.0) -> None:
    """Run an async test body in a fresh event loop, failing it after `timeout` seconds."""

    async def main() -> None:
        async with asyncio.timeout(timeout):
            await coro()

    asyncio.run(main())


async def wait_until(predicate: Callable[[], T], timeout: float = 5.0,
                     message: str = "condition") -> T:
    """Return the first truthy value of `predicate()`, polling; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.01)


def candidate_addresses(sdp: str) -> list[str]:
    """The connection addresses of the a=candidate lines of an SDP."""
    return [m.group(1) for m in re.finditer(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) ", sdp, re.M)]
