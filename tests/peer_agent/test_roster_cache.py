"""The roster cache in the data dir: kept across restarts, re-validated when read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from peer_agent.mesh import PeerInfo
from peer_agent.roster import MAX_PEERS, RosterCache
from protocol import DeviceKey


def peer(name: str) -> PeerInfo:
    key = DeviceKey.generate()
    return PeerInfo(name, key.device_id, key.public_key_b64)


def test_peers_and_addresses_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    alice, bob = peer("alice"), peer("bob")
    cache = RosterCache(path, "lobby")
    cache.remember(alice, "127.0.0.1:7001", 1)
    cache.remember(bob, None, 2)
    cache.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = RosterCache(path, "lobby")
    assert [p.device for p in again.peers()] == [bob.device, alice.device]
    known = again.get(alice.device)
    assert known is not None and known.rendezvous == "127.0.0.1:7001" and known.info == alice
    assert RosterCache(path, "other-room").peers() == []


def test_a_known_address_is_kept_until_a_new_one_is_given(tmp_path: Path) -> None:
    cache = RosterCache(tmp_path / "peers.json", "lobby")
    alice = peer("alice")
    cache.remember(alice, "127.0.0.1:7001", 1)
    cache.remember(alice, None, 2)
    assert cache.get(alice.device).rendezvous == "127.0.0.1:7001"  # type: ignore[union-attr]
    assert cache.set_address(alice.device, "127.0.0.1:7002")
    assert not cache.set_address(alice.device, "not an address")
    assert cache.get(alice.device).rendezvous == "127.0.0.1:7002"  # type: ignore[union-attr]


def test_a_damaged_entry_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    good, other = peer("alice"), peer("bob")
    entries = [
        {"user": good.user, "device": good.device, "public_key": good.public_key,
         "rendezvous": "127.0.0.1:1", "seen_ms": 1},
        {"user": "bob", "device": good.device, "public_key": other.public_key,
         "rendezvous": "", "seen_ms": 1},  # a key that is not the device's
        {"user": "bob"},
    ]
    path.write_text(json.dumps({"room": "lobby", "peers": entries}))
    assert [p.device for p in RosterCache(path, "lobby").peers()] == [good.device]
    path.write_text("{not json")
    assert RosterCache(path, "lobby").peers() == []


def test_only_the_most_recently_seen_peers_are_kept(tmp_path: Path) -> None:
    cache = RosterCache(tmp_path / "peers.json", "lobby")
    for seen in range(MAX_PEERS + 5):
        cache.remember(peer("user"), None, seen)
    peers = cache.peers()
    assert len(peers) == MAX_PEERS and min(p.seen_ms for p in peers) == 5
