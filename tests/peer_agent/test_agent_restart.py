"""An agent that stops and starts again: its seq never repeats, it rejoins the mesh, and it
catches up on what was said while it was away."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import websocket

from launcher import HttpError, ui_events
from peer_agent.log import LocalLog
from tests.helpers import poll
from tests.peer_agent.agents import AgentProcess, start_agent, wait_connected
from tests.signaling.conftest import ServerProcess, unique_name


def test_restarted_agent_keeps_its_seq_and_catches_up(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    room, alice_name, bob_name = unique_name("room"), unique_name("alice"), unique_name("bob")
    alice = start_agent(server.url, alice_name, room, tmp_path / "alice")
    bob = start_agent(server.url, bob_name, room, tmp_path / "bob")
    agents += [alice, bob]
    wait_connected(alice, 1)
    first = bob.send("before the restart")
    bob.stop()
    poll(lambda: all(p["state"] != "connected" for p in alice.state()["peers"]), timeout=20,
         message="alice sees bob go")
    alice.send("while bob was away")
    poll(lambda: alice.state()["server"]["outbox"] == 0, timeout=15, message="alice's upload")

    bob = start_agent(server.url, bob_name, room, tmp_path / "bob", register=False)
    agents.append(bob)
    wait_connected(bob, 1)
    poll(lambda: "while bob was away" in bob.texts(), timeout=15, message="bob's catch-up")
    second = bob.send("after the restart")
    assert second["device"] == first["device"]
    assert second["seq"] == first["seq"] + 1
    poll(lambda: "after the restart" in alice.texts(), timeout=15, message="alice gets it")
    assert [m["id"] for m in alice.messages()] == [m["id"] for m in bob.messages()]


def test_ui_websocket_pushes_new_messages_live(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    room = unique_name("room")
    alice = start_agent(server.url, unique_name("alice"), room, tmp_path / "alice")
    bob = start_agent(server.url, unique_name("bob"), room, tmp_path / "bob")
    agents += [alice, bob]
    wait_connected(bob, 1)
    ws = websocket.create_connection(bob.url.replace("http", "ws") + "/ws", timeout=10)
    try:
        first = json.loads(ws.recv())
        assert first["type"] == "state"
        alice.send("live to bob")
        messages: list[dict[str, Any]] = []
        while not messages:
            messages = [e for e in ui_events(json.loads(ws.recv())) if e["type"] == "message"]
        event = messages[0]
        assert event["message"]["text"] == "live to bob"
        assert event["message"]["author"] == alice.name
    finally:
        ws.close()


def test_history_scrolls_back_page_by_page(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    alice = start_agent(server.url, unique_name("alice"), unique_name("room"), tmp_path / "a")
    agents.append(alice)
    for i in range(25):
        alice.send(f"message {i}")
    seen: list[str] = []
    before = None
    while True:
        params = {"limit": "10", **({"before": before} if before else {})}
        page = alice.get("/api/messages", params=params)
        seen = [m["text"] for m in page["messages"]] + seen
        before = page["older"]
        if before is None:
            break
    assert seen == [f"message {i}" for i in range(25)]


def test_messages_travel_peer_to_peer_while_the_server_is_stopped(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    room = unique_name("room")
    alice = start_agent(server.url, unique_name("alice"), room, tmp_path / "alice")
    bob = start_agent(server.url, unique_name("bob"), room, tmp_path / "bob")
    agents += [alice, bob]
    wait_connected(alice, 1)
    wait_connected(bob, 1)
    server.kill()
    poll(lambda: not alice.state()["server"]["connected"], timeout=20,
         message="alice notices the server is gone")
    alice.send("no server needed")
    poll(lambda: "no server needed" in bob.texts(), timeout=15, message="bob gets it")
    state = alice.state()
    assert state["server"]["outbox"] == 1
    assert [p["state"] for p in state["peers"]] == ["connected"]


def test_a_late_joiner_receives_the_history(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    room = unique_name("room")
    alice = start_agent(server.url, unique_name("alice"), room, tmp_path / "alice")
    bob = start_agent(server.url, unique_name("bob"), room, tmp_path / "bob")
    agents += [alice, bob]
    wait_connected(alice, 1)
    for i in range(30):
        (alice if i % 2 else bob).send(f"early {i}")
    poll(lambda: len(bob.texts()) == 30, timeout=15, message="bob has all 30")
    carol = start_agent(server.url, unique_name("carol"), room, tmp_path / "carol")
    agents.append(carol)
    wait_connected(carol, 2)
    poll(lambda: len(carol.texts()) == 30, timeout=20, message="carol has the history")
    assert [m["id"] for m in carol.messages()] == [m["id"] for m in alice.messages()]


def test_posts_answered_before_a_kill_are_kept_and_their_seqs_never_reused(
        server: ServerProcess, tmp_path: Path, agents: list[AgentProcess]) -> None:
    # Posts are committed in groups (one fsync for all that arrive while one runs): a kill -9
    # right after the answers, with more posts in flight, loses none that was answered.
    room = unique_name("room")
    alice = start_agent(server.url, unique_name("alice"), room, tmp_path / "alice")
    bob = start_agent(server.url, unique_name("bob"), room, tmp_path / "bob")
    agents += [alice, bob]
    wait_connected(alice, 1)
    answered: list[dict[str, Any]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def post_until_killed(sender: int) -> None:
        n = 0
        while True:
            try:
                message = alice.send(f"burst {sender}/{n}", timeout=5)
            except HttpError:
                return  # the agent is gone
            n += 1
            with lock:
                answered.append(message)
                if len(answered) >= 60:
                    enough.set()

    threads = [threading.Thread(target=post_until_killed, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(60), "the burst was answered"
        alice.kill()
    finally:
        for thread in threads:
            thread.join(timeout=30)
    with lock:
        kept = list(answered)

    with LocalLog(tmp_path / "alice" / "log.sqlite3") as log:
        for message in kept:
            held = log.get(room, message["id"])
            assert held is not None, f"{message['id']} was answered, then lost in the kill"
            assert held.text == message["text"]
        device = kept[0]["device"]
        seqs = sorted(e.seq for e in log.page(room, None, 10_000) if e.device == device)
    assert seqs == list(range(1, len(seqs) + 1)), "seqs have no gap"

    alice.start()
    after = alice.send("after the kill")
    assert after["device"] == device
    assert after["seq"] == seqs[-1] + 1, "a seq handed out before the kill is never reused"
    poll(lambda: "after the kill" in bob.texts(), timeout=20, message="bob gets it")
    poll(lambda: len(bob.texts()) == len(seqs) + 1, timeout=30,
         message="bob catches up on every post alice kept")
