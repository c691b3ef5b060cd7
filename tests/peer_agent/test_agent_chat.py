"""Three real agents and a real server: the mesh forms, messages travel peer to peer, the log
reaches the server, and the UI's API keeps to its own origin."""

from __future__ import annotations

import requests

from tests.helpers import poll
from tests.peer_agent.agents import AgentProcess
from tests.signaling.conftest import ServerProcess


def test_three_agents_form_a_full_mesh(trio: list[AgentProcess]) -> None:
    for agent in trio:
        state = agent.state()
        assert {p["state"] for p in state["peers"]} == {"connected"}
        assert len(state["peers"]) == 2


def test_each_link_says_it_goes_host_to_host_on_loopback(trio: list[AgentProcess]) -> None:
    for agent in trio:
        for peer in agent.state()["peers"]:
            path = peer["path"]
            assert (path["kind"], path["local"], path["remote"]) == ("host", "host", "host")
            assert path["local_address"].startswith("127.0.0.1:")
            assert path["remote_address"].startswith("127.0.0.1:")
            assert peer["connect_ms"] > 0


def test_each_agent_delays_its_sctp_acknowledgements(trio: list[AgentProcess]) -> None:
    """peer_agent/sctp_acks.py is on in the agent process (tests/peer_agent/test_sctp_acks.py
    checks what it does on real aiortc channels)."""
    for agent in trio:
        said = agent.log_path.read_text()
        assert "SCTP: a SACK for every second packet, or for a lone one after 20 ms" in said


def test_a_message_reaches_every_peer_in_the_same_order(trio: list[AgentProcess]) -> None:
    alice, bob, carol = trio
    alice.send("one from alice")
    bob.send("two from bob")
    carol.send("three from carol")
    wanted = {"one from alice", "two from bob", "three from carol"}
    for agent in trio:
        poll(lambda agent=agent: wanted <= set(agent.texts()), timeout=15,
             message=f"messages at {agent.name}")
    orders = [[m["id"] for m in agent.messages()] for agent in trio]
    assert orders[0] == orders[1] == orders[2]


def test_every_message_reaches_the_server_log(trio: list[AgentProcess],
                                              room_server: ServerProcess) -> None:
    alice = trio[0]
    sent = alice.send("for the log")
    poll(lambda: alice.state()["server"]["outbox"] == 0, timeout=15, message="outbox drained")
    mine = next(m for m in alice.messages() if m["id"] == sent["id"])
    assert mine["delivery"]["server"] is True
    poll(lambda: next(m for m in alice.messages() if m["id"] == sent["id"])["delivery"]
         ["peers_reached"] == 2, timeout=15, message="receipts from both peers")


def test_the_ui_refuses_requests_from_other_origins(trio: list[AgentProcess]) -> None:
    alice = trio[0]
    reply = requests.post(alice.url + "/api/messages", json={"text": "forged"},
                          headers={"Origin": "http://evil.example"}, timeout=10)
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "cross_origin"
    form = requests.post(alice.url + "/api/messages", data={"text": "form post"}, timeout=10)
    assert form.status_code == 415
    assert "forged" not in alice.texts() and "form post" not in alice.texts()


def test_a_message_too_large_for_a_frame_is_refused_clearly(trio: list[AgentProcess]) -> None:
    reply = requests.post(trio[0].url + "/api/messages", json={"text": "x" * 5000}, timeout=10)
    assert reply.status_code == 400
    assert "4000" in reply.json()["error"]["message"]
