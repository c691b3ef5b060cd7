"""The roster cache: every peer device of the room this agent has known, with its key and
rendezvous address, kept in the data dir (`peers.json`, mode 0600).

It is what a restart without the server has to go on: whom to link to, and where to knock
(`peer_agent.rendezvous`). Entries come from the server's rosters (and a peer's new address
from its signed rendezvous hello); the most recently seen `MAX_PEERS` are kept.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protocol import InvalidEnvelope, device_id_for, is_normalized_username, load_public_key
from protocol.rendezvous import is_address

from .mesh import PeerInfo

log = logging.getLogger("gibberish.agent.roster")

MAX_PEERS = 256


@dataclass(frozen=True)
class KnownPeer:
    """A peer device as last seen: who, its key, where it listens, when (ms since epoch)."""

    user: str
    device: str
    public_key: str
    rendezvous: str
    seen_ms: int

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.user, self.device, self.public_key)


def roster_file(room: str) -> str:
    """The file name of a room's roster cache in the data dir."""
    return f"peers.{room}.json"


class RosterCache:
    """The cached roster of one room, loaded from and saved to `path`."""

    def __init__(self, path: Path, room: str) -> None:
        self._path = path
        self._room = room
        self._peers: dict[str, KnownPeer] = {}
        self._load()

    def peers(self) -> list[KnownPeer]:
        """Every cached peer, most recently seen first."""
        return sorted(self._peers.values(), key=lambda p: p.seen_ms, reverse=True)

    def get(self, device: str) -> KnownPeer | None:
        return self._peers.get(device)

    def remember(self, info: PeerInfo, rendezvous: str | None, seen_ms: int) -> None:
        """Record a peer the server listed (or that proved its key); an address of None or ""
        keeps the one already known."""
        old = self._peers.get(info.device)
        address = rendezvous if rendezvous and is_address(rendezvous) else (
            old.rendezvous if old is not None else "")
        self._peers[info.device] = KnownPeer(info.user, info.device, info.public_key,
                                             address, seen_ms)
        if len(self._peers) > MAX_PEERS:
            for stale in self.peers()[MAX_PEERS:]:
                del self._peers[stale.device]

    def set_address(self, device: str, rendezvous: str) -> bool:
        """Record a new rendezvous address for a known device; True if it changed."""
        old = self._peers.get(device)
        if old is None or not is_address(rendezvous) or old.rendezvous == rendezvous:
            return False
        self._peers[device] = KnownPeer(old.user, old.device, old.public_key, rendezvous,
                                        old.seen_ms)
        return True

    def save(self) -> None:
        """Write the cache atomically (a crash leaves the old file or the new one)."""
        data = {"room": self._room, "peers": [asdict(p) for p in self.peers()]}
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def _load(self) -> None:
        if not self._path.exists():
            return
        try:
            data: Any = json.loads(self._path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring the roster cache %s: %s", self._path, exc)
            return
        if not isinstance(data, dict) or data.get("room") != self._room:
            return
        for raw in data.get("peers") or []:
            peer = _checked(raw)
            if peer is not None:
                self._peers[peer.device] = peer


def _checked(raw: Any) -> KnownPeer | None:
    """A cached entry, re-validated: the file is ours, but a damaged one must not inject a peer
    whose key does not match its id."""
    try:
        peer = KnownPeer(str(raw["user"]), str(raw["device"]), str(raw["public_key"]),
                         str(raw.get("rendezvous") or ""), int(raw.get("seen_ms") or 0))
        key = load_public_key(peer.public_key).public_bytes_raw()
    except (KeyError, TypeError, ValueError, InvalidEnvelope):
        return None
    if device_id_for(key) != peer.device or not is_normalized_username(peer.user):
        return None
    if peer.rendezvous and not is_address(peer.rendezvous):
        return None
    return peer
