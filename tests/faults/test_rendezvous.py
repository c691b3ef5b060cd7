"""The server is down and a peer restarts: it reaches a live peer at its rendezvous address,
that peer relays its offers and answers to the others, and the full mesh forms again."""

from __future__ import annotations

import asyncio

import requests

from peer_agent.mesh import PeerInfo
from peer_agent.rendezvous import Rendezvous
from protocol import DeviceKey
from tests.faults.cluster import PASSWORD, RoomAgents, Server, wait_mesh
from tests.helpers import poll


def test_restarted_peer_rejoins_the_full_mesh_through_rendezvous_while_the_server_is_down(
        server: Server, agents: RoomAgents) -> None:
    alice, bob, carol = agents.several("alice", "bob", "carol")
    wait_mesh([alice, bob, carol])
    server.kill()
    for agent in (alice, bob, carol):
        poll(lambda agent=agent: not agent.state()["server"]["connected"], timeout=30,
             message=f"{agent.name} sees the server gone")
    bob.kill()
    alice.send("said while bob was away")
    bob.start()
    wait_mesh([alice, bob, carol], timeout=90)
    poll(lambda: "said while bob was away" in bob.texts(), timeout=30, message="bob catches up")
    bob.send("bob is back")
    for agent in (alice, carol):
        poll(lambda agent=agent: "bob is back" in agent.texts(), timeout=30,
             message=f"{agent.name} hears bob")
    assert bob.state()["rendezvous"]["sessions"], "bob came back through a rendezvous session"
    assert not bob.state()["server"]["connected"]


def test_a_rendezvous_from_a_device_the_server_never_vouched_for_is_refused(
        server: Server, agents: RoomAgents, room: str) -> None:
    alice = agents("alice")
    state = alice.state()
    address = state["rendezvous"]["address"]
    token = login(server, alice.name)

    def room_keys() -> list[dict[str, str]] | None:
        # The room exists once alice's join has reached the server; until then it is a 404.
        reply = requests.get(f"{server.url}/api/rooms/{room}/keys", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
        devices: list[dict[str, str]] = reply.json().get("devices", [])
        return devices if reply.ok and any(k["id"] == state["device"] for k in devices) else None

    keys = poll(room_keys, timeout=30, message="alice's key listed for the room")
    alice_info = next(PeerInfo(k["user"], k["id"], k["public_key"]) for k in keys
                      if k["id"] == state["device"])
    stranger = DeviceKey.generate()

    async def knock() -> bool:
        rendezvous = Rendezvous(key=stranger, user="mallory", room=room, host="127.0.0.1",
                                port=0, vouched=lambda device: None,
                                on_frame=lambda peer, text: None,
                                on_session=lambda peer, up, address: None)
        await rendezvous.start()
        try:
            return await rendezvous.dial(address, alice_info)
        finally:
            await rendezvous.close()

    assert asyncio.run(knock()) is False
    poll(lambda: alice.state()["rendezvous"]["refused"] == 1, timeout=10,
         message="alice counts the refusal")
    assert alice.state()["rendezvous"]["sessions"] == []


def login(server: Server, name: str) -> str:
    reply = requests.post(server.url + "/api/login", json={"username": name,
                                                          "password": PASSWORD}, timeout=10)
    reply.raise_for_status()
    return str(reply.json()["token"])
