"""One agent per device, every room of the user: one peer connection per pair of devices
whatever rooms they share, each room's messages only to its members, rooms remembered across
restarts (a data dir from before rooms were remembered upgrades in place), private rooms closed
to non-members, by the server and by the peers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.http import HttpError
from launcher.server import OPEN_LIMITS
from tests.helpers import poll
from tests.peer_agent.agents import LOOPBACK_RECONNECT_MAX, AgentProcess
from tests.peer_agent.rogue import RoguePeer
from tests.peer_agent.signal_bus import run, wait_until
from tests.signaling.conftest import ServerProcess, unique_name

PASSWORD = "password-" + "x" * 8


@pytest.fixture(scope="module")
def room_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of the module's own with the sign-in limits open: its tests register and sign
    in a dozen devices from 127.0.0.1 within a minute."""
    running = ServerProcess(tmp_path_factory.mktemp("rooms-server"), env=OPEN_LIMITS)
    running.start()
    yield running
    running.stop()


def start(server: ServerProcess, base: Path, name: str, room: str, *more: str,
          agents: list[AgentProcess]) -> AgentProcess:
    agent = AgentProcess(server.url, unique_name(name), room, base / name, PASSWORD,
                         name=name, rooms=more, reconnect_max=LOOPBACK_RECONNECT_MAX)
    agents.append(agent)
    agent.start()
    return agent


def linked_in(agent: AgentProcess, room: str, other: AgentProcess) -> bool:
    peers = agent.state(room)["peers"]
    return any(p["device"] == other.device and p["state"] == "connected" for p in peers)


def links_to(agent: AgentProcess, other: AgentProcess) -> list[dict[str, object]]:
    return [link for link in agent.device_links() if link["device"] == other.device]


def test_one_connection_per_pair_of_devices_and_each_room_only_to_its_members(
        room_server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    a, b, c = (unique_name(r) for r in ("red", "green", "blue"))
    alice = start(room_server, tmp_path, "alice", a, b, c, agents=agents)
    bob = start(room_server, tmp_path, "bob", a, b, agents=agents)
    carol = start(room_server, tmp_path, "carol", c, agents=agents)
    assert [r["name"] for r in alice.room_list()] == [a, b, c]
    poll(lambda: linked_in(alice, a, bob) and linked_in(alice, b, bob)
         and linked_in(alice, c, carol), timeout=30, message="alice linked in every room")
    # One connection to bob carries both rooms they share; one to carol carries the third.
    to_bob, to_carol = links_to(alice, bob), links_to(alice, carol)
    assert len(to_bob) == 1 and sorted(to_bob[0]["rooms"]) == sorted([a, b])  # type: ignore
    assert len(to_carol) == 1 and to_carol[0]["rooms"] == [c]
    assert len(alice.device_links()) == 2

    sent = {room: [alice.send(f"{room} from alice {i}", room=room)["text"] for i in range(3)]
            for room in (a, b, c)}
    sent[a].append(bob.send(f"{a} from bob", room=a)["text"])
    poll(lambda: set(sent[a]) <= set(bob.texts(a)) and set(sent[b]) <= set(bob.texts(b))
         and set(sent[c]) <= set(carol.texts(c)) and set(sent[a]) <= set(alice.texts(a)),
         timeout=30, message="every room's messages at its members")
    # Nothing crossed into a room it was not said in, and the order is the same everywhere.
    assert alice.texts(a) == bob.texts(a) and sorted(bob.texts(a)) == sorted(sent[a])
    assert alice.texts(b) == bob.texts(b) == sent[b]
    assert alice.texts(c) == carol.texts(c) == sent[c]
    assert [r["name"] for r in bob.room_list()] == [a, b]
    with pytest.raises(HttpError) as refused:
        bob.texts(c)
    assert refused.value.status == 404

    # Joining a third shared room rides on the open connection: no new ICE/DTLS session.
    before = links_to(alice, carol)[0]
    carol.join(a)
    poll(lambda: linked_in(alice, a, carol) and linked_in(carol, a, alice), timeout=30,
         message="carol in alice's first room over the link they had")
    after = links_to(alice, carol)[0]
    assert (after["attempts"], after["connect_ms"]) == (before["attempts"], before["connect_ms"])
    assert sorted(after["rooms"]) == sorted([a, c])  # type: ignore[arg-type]
    poll(lambda: set(sent[a]) <= set(carol.texts(a)), timeout=30,
         message="carol caught up with the room she joined")

    # Leaving a room closes only what belongs to it; the connection closes with the last one.
    carol.leave(a)
    poll(lambda: links_to(alice, carol) and links_to(alice, carol)[0]["rooms"] == [c],
         timeout=30, message="the link to carol back to one room")
    assert links_to(alice, carol)[0]["state"] == "connected"
    carol.leave(c)
    poll(lambda: not links_to(alice, carol), timeout=30,
         message="no link to carol once she shares no room")
    assert [r["name"] for r in carol.room_list()] == []


def test_rooms_joined_are_remembered_and_an_old_data_dir_upgrades(
        room_server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    first, joined = unique_name("first"), unique_name("later")
    alice = start(room_server, tmp_path, "alice", first, agents=agents)
    alice.join(joined)
    alice.send("said in the room joined from the UI", room=joined)
    alice.send("said in the first room", room=first)
    alice.restart()
    assert [r["name"] for r in alice.room_list()] == [first, joined]
    assert alice.texts(joined) == ["said in the room joined from the UI"]

    # A data dir as agents wrote it before rooms were remembered: one room's roster cache in
    # peers.json, no rooms.json. The agent finds its rooms in its log and its cache.
    alice.stop()
    data = alice.data_dir
    (data / "rooms.json").unlink()
    (data / "peers.json").write_text(json.dumps({"room": first, "peers": []}))
    (data / f"peers.{first}.json").unlink(missing_ok=True)
    upgraded = AgentProcess(room_server.url, alice.user, unique_name("new"), data, PASSWORD,
                            name="alice-upgraded", register=False,
                            reconnect_max=LOOPBACK_RECONNECT_MAX)
    agents.append(upgraded)
    upgraded.start()
    names = [r["name"] for r in upgraded.room_list()]
    assert names[:2] == [first, joined] and len(names) == 3
    assert upgraded.texts(first) == ["said in the first room"]
    assert not (data / "peers.json").exists() and (data / f"peers.{first}.json").exists()


def test_a_private_room_is_closed_to_non_members_by_the_server_and_the_peers(
        room_server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    public, private = unique_name("hall"), unique_name("den")
    alice = start(room_server, tmp_path, "alice", public, agents=agents)
    alice.join(private, private=True)
    state = alice.state(private)
    assert state["kind"] == "private" and state["members"] == [alice.user]
    alice.send("members only", room=private)

    async def body() -> None:
        # A member of the public room, linked to alice there, tries the private room.
        rogue = RoguePeer(room_server.url, public, unique_name("eve"))
        await rogue.start()
        try:
            await wait_until(lambda: rogue.connected_to(alice.device), timeout=30,
                             message="eve's channel to alice in the public room")
            before = sum(alice.state(private)["refused"].values())
            forged = dict(rogue.envelope("let me in").to_dict(), room=private)
            rogue.send_raw(alice.device, {"room": private, "t": "msg", "env": forged})
            rogue.send_raw(alice.device, {"room": private, "t": "vv", "vector": {}})
            await wait_until(lambda: sum(alice.state(public)["refused"].values()) >= 2,
                             timeout=10, message="alice refusing eve's frames for the den")
            events = await asyncio.to_thread(alice.get, "/api/events", {"room": public})
            reasons = [e.get("reason", "") for e in events["events"] if e["kind"] == "refused"]
            assert sum("not_in_room" in r for r in reasons) == 2
            assert sum(alice.state(private)["refused"].values()) == before
            assert "let me in" not in alice.texts(private)
        finally:
            await rogue.close()

    run(body, timeout=60)
    bob = start(room_server, tmp_path, "bob", public, agents=agents)
    with pytest.raises(HttpError) as refused:
        bob.join(private)
    assert refused.value.status in (403, 409)
    assert [r["name"] for r in bob.room_list()] == [public]
    assert alice.texts(private) == ["members only"]


def test_a_frame_that_overtakes_the_rooms_roster_is_held_until_the_room_lists_its_sender(
        room_server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    """A peer that joins a room sends its frames as soon as its join answer lists us, which may
    be before the server's peer_joined reaches us: such a frame waits, and is taken when the
    room lists the sender."""
    first, second = unique_name("first"), unique_name("second")
    alice = start(room_server, tmp_path, "alice", first, second, agents=agents)

    async def body() -> None:
        rogue = RoguePeer(room_server.url, first, unique_name("ivan"))
        await rogue.start()
        joined = None
        try:
            await wait_until(lambda: rogue.connected_to(alice.device), timeout=30,
                             message="ivan's channel to alice in the first room")
            early = rogue.envelope("sent before alice heard I joined", room=second)
            rogue.send_raw(alice.device, {"room": second, "t": "msg", "env": early.to_dict()})
            joined = rogue.join_also(second)
            await wait_until(lambda: "sent before alice heard I joined" in alice.texts(second),
                             timeout=15, message="the held frame taken once ivan is listed")
            refused = alice.state(second)["refused"]
            assert not refused.get("not_in_room"), refused
        finally:
            if joined is not None:
                await joined.close()
            await rogue.close()

    run(body, timeout=60)


def test_a_room_left_while_its_join_is_on_its_way_is_left_at_the_server(
        room_server: ServerProcess) -> None:
    """Leaving a room whose join has gone out but not been answered (a reconnection rejoining
    every room as the user leaves one) waits for the answer and then leaves: the server runs
    each event in a thread of its own, so a leave sent at once could be handled first, and a
    leave not sent at all left the device in the room until its connection closed."""
    second = unique_name("second")

    async def body() -> None:
        alice = RoguePeer(room_server.url, unique_name("first"), unique_name("alice"))
        bob = RoguePeer(room_server.url, second, unique_name("bob"))
        try:
            await alice.start()
            await wait_until(lambda: alice.client.joined, timeout=30, message="alice joined")
            other = alice.join_also(second)  # the join goes out now
            try:
                await other.leave()  # in the same turn: no answer yet
                await wait_until(other.settled.is_set, timeout=30,
                                 message="the server answered alice's join")
                assert not other.joined
                await bob.start()
                await wait_until(lambda: bob.client.joined, timeout=30, message="bob joined")
                assert alice.key.device_id not in bob.roster
            finally:
                await other.close()
        finally:
            await alice.close()
            await bob.close()

    run(body, timeout=60)
