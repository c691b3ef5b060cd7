"""Lamport poisoning: one validly signed envelope with the largest Lamport time would leave
nobody able to post after it. Peers and the server refuse a Lamport time past their horizon
(their clock in ms plus a day), so the room carries on."""

from __future__ import annotations

import asyncio

from protocol import MAX_LAMPORT
from protocol.sync import MsgFrame
from tests.faults.cluster import RoomAgents, Server, wait_mesh
from tests.helpers import poll
from tests.peer_agent.rogue import RoguePeer
from tests.peer_agent.signal_bus import wait_until
from tests.signaling.conftest import connect_peer, register_account, signed_envelope, unique_name


def test_the_server_refuses_an_upload_whose_lamport_is_past_its_horizon(
        server: Server, room: str) -> None:
    mallory = register_account(server.url, "mallory")
    peer = connect_peer(mallory)
    try:
        assert peer.join(room)["ok"]
        poisoned = signed_envelope(mallory, room, 1, lamport=MAX_LAMPORT)
        reply = peer.call("publish", {"envelopes": [poisoned]})
        assert reply["results"][0]["ok"] is False
        assert reply["results"][0]["error"]["code"] == "lamport_ahead"
        honest = peer.call("publish", {"envelopes": [signed_envelope(mallory, room, 1)]})
        assert honest["results"][0]["ok"] is True
    finally:
        peer.client.disconnect()


def test_agents_refuse_a_poisoned_lamport_from_a_peer_and_everyone_can_still_post(
        server: Server, agents: RoomAgents, room: str) -> None:
    alice, bob = agents.several("alice", "bob")
    wait_mesh([alice, bob])
    devices = [alice.state()["device"], bob.state()["device"]]

    async def poison() -> None:
        rogue = RoguePeer(server.url, room, unique_name("mallory"))
        await rogue.start()
        try:
            await wait_until(lambda: all(rogue.connected_to(d) for d in devices), timeout=60,
                             message="mallory's channels")
            frame = MsgFrame(rogue.envelope("the end of time", lamport=MAX_LAMPORT)).encode()
            for device in devices:
                rogue.send_raw(device, frame)
            await wait_until(lambda: all(a.state()["refused"].get("lamport_ahead") == 1
                                         for a in (alice, bob)), timeout=30,
                             message="both refuse it")
        finally:
            await rogue.close()

    asyncio.run(poison())
    assert "the end of time" not in alice.texts()
    sent = alice.send("time goes on")
    assert sent["lamport"] < 1000
    poll(lambda: "time goes on" in bob.texts(), timeout=20, message="bob hears alice")
    assert bob.send("and on")["lamport"] == sent["lamport"] + 1
