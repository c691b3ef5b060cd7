"""The mesh under faults: offers that arrive late or twice, and offering at once when a peer
reappears (real aiortc peers over 127.0.0.1, joined by the in-memory signal bus)."""

from __future__ import annotations

from typing import Any

from peer_agent.mesh import LinkState
from tests.peer_agent.signal_bus import Room, run, sorted_keys, wait_until


def test_an_offer_replayed_after_the_link_is_up_is_ignored() -> None:
    async def body() -> None:
        async with Room() as room:
            first, second = sorted_keys(2)
            alice, bob = room.join("alice", first), room.join("bob", second)
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")
            offer = next(s for s in room.bus.sent if s.kind == "offer")
            answer = next(s for s in room.bus.sent if s.kind == "answer")
            assert isinstance(offer.payload["oid"], int)
            assert answer.payload["oid"] == offer.payload["oid"]
            attempts = bob.mesh.links[alice.device].attempts
            # As if a frozen server or a second relay delivered them again.
            await bob.mesh.handle_signal("alice", alice.device, "offer", offer.payload)
            await alice.mesh.handle_signal("bob", bob.device, "answer", answer.payload)
            assert bob.mesh.links[alice.device].attempts == attempts
            assert room.fully_connected()
            assert alice.mesh.refused_signals == bob.mesh.refused_signals == 0

    run(body)


def test_an_older_offer_arriving_after_a_newer_one_is_ignored() -> None:
    async def body() -> None:
        async with Room(retry_base=0.05) as room:
            first, second = sorted_keys(2)
            held: list[dict[str, Any]] = []

            def hold_first_offer(sender: str, to: str, kind: str,
                                 payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
                if kind == "offer" and not held:
                    held.append(payload)
                    return []  # lost for now: the offerer times out and offers again
                return [(kind, payload)]

            room.bus.tamper = hold_first_offer
            alice, bob = room.join("alice", first, connect_timeout=0.5), room.join("bob", second)
            room.share_roster()
            await wait_until(room.fully_connected, timeout=10, message="a link on the retry")
            await bob.mesh.handle_signal("alice", alice.device, "offer", held[0])
            assert room.fully_connected()
            assert bob.mesh.links[alice.device].attempts == 1

    run(body)


def test_nudge_offers_at_once_instead_of_waiting_out_the_backoff() -> None:
    async def body() -> None:
        async with Room(retry_base=60.0, retry_max=60.0) as room:
            first, second = sorted_keys(2)
            room.bus.tamper = lambda sender, to, kind, payload: []  # the signals go nowhere
            alice, bob = room.join("alice", first, connect_timeout=0.5), room.join("bob", second)
            room.share_roster()
            await wait_until(lambda: alice.state_of(bob) is LinkState.FAILED, timeout=5,
                             message="the first attempt fails")
            room.bus.tamper = None
            assert not bob.mesh.nudge(alice.device), "only the offering side offers"
            assert alice.mesh.nudge(bob.device)
            await wait_until(room.fully_connected, timeout=10, message="a link at once")

    run(body)
