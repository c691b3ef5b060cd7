"""What an agent does with frames from a peer that misbehaves: forged, replayed and malformed
frames are dropped and counted, and the channel stays open for the next good message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peer_agent.agents import AgentProcess, start_agent
from tests.peer_agent.rogue import RoguePeer
from tests.peer_agent.signal_bus import run, wait_until
from tests.signaling.conftest import ServerProcess, unique_name


@pytest.fixture
def alice(server: ServerProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    agent = start_agent(server.url, unique_name("alice"), unique_name("room"), tmp_path / "a")
    yield agent
    agent.stop()


def _room_of(agent: AgentProcess) -> str:
    return str(agent.state()["room"])


def test_forged_replayed_and_malformed_frames_are_dropped_and_the_channel_stays_open(
        server: ServerProcess, alice: AgentProcess) -> None:
    alice_device = alice.state()["device"]

    async def body() -> None:
        rogue = RoguePeer(server.url, _room_of(alice), unique_name("rogue"))
        await rogue.start()
        try:
            await wait_until(lambda: rogue.connected_to(alice_device), timeout=30,
                             message="rogue's channel to alice")
            good = rogue.envelope("a genuine message")
            tampered = dict(rogue.envelope("signed text").to_dict(), text="altered text")
            impostor = rogue.envelope("I am alice", author=alice.name)
            for frame in (
                {"t": "msg", "env": tampered},         # text changed after signing
                {"t": "msg", "env": impostor.to_dict()},  # rogue's key, alice's name
                "this is not JSON",
                {"t": "no-such-frame"},
                {"t": "msg", "env": {"room": "x"}},    # malformed envelope
                {"t": "links", "links": [{"device": "me", "state": "up", "rtt_ms": 1}]},
                {"t": "msg", "env": good.to_dict()},
                {"t": "msg", "env": good.to_dict()},   # replayed
            ):
                rogue.send_raw(alice_device, frame)
            later = rogue.envelope("still talking after all that")
            rogue.send_raw(alice_device, {"t": "msg", "env": later.to_dict()})

            def texts() -> list[str]:
                return alice.texts()

            await wait_until(lambda: "still talking after all that" in texts(), timeout=15,
                             message="the good message after the bad ones")
            seen = await asyncio.to_thread(texts)
            assert seen.count("a genuine message") == 1
            assert not {"altered text", "signed text", "I am alice"} & set(seen)
            state = await asyncio.to_thread(alice.state)
            assert sum(state["refused"].values()) >= 5
            # Counted by the protocol's codes, as the browser peer counts them.
            assert {"bad_signature", "invalid_envelope"} <= set(state["refused"]), state["refused"]
            assert rogue.connected_to(alice_device)
            # The timeline says what was refused and why; the replay left no second step.
            events = (await asyncio.to_thread(alice.get, "/api/events"))["events"]
            refused = [e for e in events if e["kind"] == "refused"]
            assert len(refused) >= 5, refused
            reasons = " ".join(e["reason"] for e in refused)
            for reason in ("bad signature", "not valid JSON", "no-such-frame", "links frame",
                           f"replayed: {good.id}"):
                assert reason in reasons, (reason, reasons)
            path = await asyncio.to_thread(alice.get, f"/api/messages/{good.id}/path")
            received = [s for s in path["steps"] if s["what"] == "received"]
            assert [(s["via"], s["user"]) for s in received] == [("channel", rogue.name)]
        finally:
            await rogue.close()

    run(body, timeout=60)


def test_a_forged_envelope_in_a_sync_batch_is_refused_and_the_rest_stored(
        server: ServerProcess, alice: AgentProcess) -> None:
    # 40 envelopes: checked off the event loop and spread over the verify pool
    # (peer_batches.py); the live message sent right after is decided after the batch.
    alice_device = alice.state()["device"]

    async def body() -> None:
        rogue = RoguePeer(server.url, _room_of(alice), unique_name("rogue"))
        await rogue.start()
        try:
            await wait_until(lambda: rogue.connected_to(alice_device), timeout=30,
                             message="rogue's channel to alice")
            batch = [rogue.envelope(f"line {n}", lamport=n).to_dict() for n in range(1, 41)]
            batch[17] = {**batch[17], "text": "altered line"}
            rogue.send_raw(alice_device, {"t": "batch", "envs": batch, "more": False})
            after = rogue.envelope("right after the batch", lamport=41)
            rogue.send_raw(alice_device, {"t": "msg", "env": after.to_dict()})

            def texts() -> list[str]:
                return alice.texts()

            await wait_until(lambda: "right after the batch" in texts(), timeout=15,
                             message="the live message after the batch")
            seen = await asyncio.to_thread(texts)
            assert seen == [f"line {n}" for n in range(1, 41) if n != 18] + [
                "right after the batch"]
            state = await asyncio.to_thread(alice.state)
            assert state["refused"].get("bad_signature") == 1, state["refused"]
        finally:
            await rogue.close()

    run(body, timeout=60)
