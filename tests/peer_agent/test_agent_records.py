"""What an agent records for the network view (docs/network-view.md), with a real server and
real agents: each message's path (authored, sent, received, acked, stored by the server), the
timeline of the room's events, and notes added through the UI's API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from launcher.http import HttpError
from tests.helpers import poll
from tests.peer_agent.agents import AgentProcess, start_agent, wait_connected
from tests.signaling.conftest import ServerProcess, unique_name


def path_of(agent: AgentProcess, message_id: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = agent.get(f"/api/messages/{message_id}/path")["steps"]
    return steps


def path_once_held(agent: AgentProcess, message_id: str) -> list[dict[str, Any]]:
    """The path, or no steps while the message has not reached this device yet (404)."""
    try:
        return path_of(agent, message_id)
    except HttpError as exc:
        if exc.status != 404:
            raise
        return []


def whats(steps: list[dict[str, Any]]) -> list[str]:
    return [s["what"] for s in steps]


def events_of(agent: AgentProcess, kind: str) -> list[dict[str, Any]]:
    return [e for e in agent.get("/api/events")["events"] if e["kind"] == kind]


def test_the_authors_path_lists_the_channels_the_receipts_and_the_server_cursor(
        trio: list[AgentProcess]) -> None:
    alice, bob, carol = trio
    message = alice.send("which way did I go?")

    def complete() -> bool:
        seen = whats(path_of(alice, message["id"]))
        return seen.count("acked") == 2 and "uploaded" in seen

    poll(complete, timeout=20, message="receipts from both peers and the server's ack")
    steps = path_of(alice, message["id"])
    assert whats(steps)[:2] == ["authored", "sent"]
    assert {p["user"] for p in steps[1]["peers"]} == {bob.name, carol.name}
    assert steps[1]["via"] == "channel"
    assert {s["user"] for s in steps if s["what"] == "acked"} == {bob.name, carol.name}
    uploaded = [s for s in steps if s["what"] in ("uploaded", "on_server")]
    assert len(uploaded) == 1 and uploaded[0]["what"] == "uploaded"
    assert uploaded[0]["cursor"] >= 1
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    assert all(s["text"] for s in steps)


def test_a_receivers_path_names_the_sender_and_the_servers_cursor(
        trio: list[AgentProcess]) -> None:
    alice, bob, _ = trio
    message = alice.send("did bob get it from alice?")
    # bob learns that the server holds it from the server's broadcast, or from its own upload
    # of the copy it holds (every holder uploads what the server lacks; the server keeps one).
    server_steps = ("on_server", "uploaded")
    poll(lambda: set(server_steps) & set(whats(path_once_held(bob, message["id"]))), timeout=20,
         message="bob told that the server stored it")
    steps = path_of(bob, message["id"])
    received = [s for s in steps if s["what"] == "received"]
    assert [(s["via"], s["user"]) for s in received] == [("channel", alice.name)]
    poll(lambda: "uploaded" in whats(path_of(alice, message["id"])), timeout=20,
         message="alice's upload acknowledged")
    authored_cursor = [s["cursor"] for s in path_of(alice, message["id"])
                       if s["what"] == "uploaded"]
    assert [s["cursor"] for s in steps if s["what"] in server_steps] == authored_cursor


def test_the_timeline_shows_the_server_link_the_joins_and_the_data_channels(
        trio: list[AgentProcess]) -> None:
    alice, bob, carol = trio
    assert events_of(alice, "started")
    assert [e["state"] for e in events_of(alice, "server")][-1] == "connected"
    connected = {e["user"] for e in events_of(alice, "link") if e["state"] == "connected"}
    assert connected == {bob.name, carol.name}
    # The agents start side by side: of each pair, the one that joined first heard of the
    # other's arrival from the server.
    for other in (bob, carol):
        assert (other.name in {e["user"] for e in events_of(alice, "joined")}
                or alice.name in {e["user"] for e in events_of(other, "joined")}), other.name
    seqs = [e["seq"] for e in alice.get("/api/events")["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_each_peer_reports_its_own_links_so_the_whole_mesh_can_be_drawn(
        trio: list[AgentProcess]) -> None:
    alice, bob, carol = trio
    devices = {a.name: a.state()["device"] for a in trio}

    def reported_by(agent: AgentProcess, peer: AgentProcess) -> dict[str, dict[str, Any]]:
        entry = next(p for p in agent.state()["peers"] if p["device"] == devices[peer.name])
        return {link["device"]: link for link in entry["links"]}

    # What alice learns from bob: his channels to alice and to carol, open, with their RTTs.
    poll(lambda: {devices[alice.name], devices[carol.name]} <= set(reported_by(alice, bob)),
         timeout=20, message="bob's report of his links reaches alice")
    poll(lambda: all(link["rtt_ms"] is not None and link["state"] == "connected"
                     for link in reported_by(alice, bob).values()),
         timeout=20, message="bob's links open, with round-trip times")
    assert set(reported_by(carol, alice)) == {devices[bob.name], devices[carol.name]}


def test_a_note_posted_to_the_timeline_is_kept_and_bad_ones_are_refused(
        trio: list[AgentProcess]) -> None:
    alice = trio[0]
    reply = requests.post(alice.url + "/api/events", json={"text": "Step 1: hello"}, timeout=10)
    assert reply.status_code == 201, reply.text
    assert reply.json()["event"]["kind"] == "note"
    assert events_of(alice, "note")[-1]["text"] == "Step 1: hello"
    for body, status in (({"text": ""}, 400), ({"text": "x" * 501}, 400), ({"note": "x"}, 400),
                         ([1, 2], 400)):
        reply = requests.post(alice.url + "/api/events", json=body, timeout=10)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["error"]["code"] in ("invalid_argument", "invalid_request")
    reply = requests.post(alice.url + "/api/events", data="text=hi", timeout=10,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 415
    reply = requests.post(alice.url + "/api/events", json={"text": "from elsewhere"},
                          headers={"Origin": "http://evil.example"}, timeout=10)
    assert reply.status_code == 403
    assert events_of(alice, "note")[-1]["text"] == "Step 1: hello"


def test_the_path_of_an_unknown_message_is_not_found(trio: list[AgentProcess]) -> None:
    alice = trio[0]
    for missing in ("0" * 43 + ":1", "not-an-id"):
        reply = requests.get(f"{alice.url}/api/messages/{missing}/path", timeout=10)
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "not_found"


def test_a_restarted_agent_records_its_catch_up_and_keeps_the_paths(
        room_server: ServerProcess, tmp_path: Path) -> None:
    room = unique_name("room")
    alice = start_agent(room_server.url, unique_name("alice"), room, tmp_path / "alice")
    bob_name = unique_name("bob")
    bob = start_agent(room_server.url, bob_name, room, tmp_path / "bob")
    try:
        wait_connected(alice, peers=1)
        wait_connected(bob, peers=1)
        first = alice.send("before bob went away")
        poll(lambda: first["text"] in bob.texts(), timeout=20, message="bob has the first")
        bob.stop()
        missed = alice.send("while bob was away")
        bob = start_agent(room_server.url, bob_name, room, tmp_path / "bob", register=False)
        poll(lambda: missed["text"] in bob.texts(), timeout=30, message="bob caught up")
        # The path kept from before the restart, and how the missed message came in.
        assert [s["via"] for s in path_of(bob, first["id"]) if s["what"] == "received"] == [
            "channel"]
        vias = [s["via"] for s in path_of(bob, missed["id"]) if s["what"] == "received"]
        assert len(vias) == 1 and vias[0] in ("sync", "server")
        kind = "sync" if vias[0] == "sync" else "history"
        assert any(e["fresh"] >= 1 for e in events_of(bob, kind))
    finally:
        alice.stop()
        bob.stop()
