"""Hostile input to a peer agent: requests to its UI's JSON API, frames on a data channel from a
rogue member, forged signals relayed by the server, and frames at its rendezvous listener.

Each gets its clear refusal (a status and code, or a refusal counted and shown in the timeline
with its reason); afterwards the agent still answers, its log holds no traceback, and its
legitimate messages are there once each."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import websocket

from protocol import MAX_FRAME_BYTES, DeviceKey, b64encode
from protocol.rendezvous import NONCE_BYTES, Hello, dialer_proof_bytes
from tests.helpers import poll
from tests.hostile.conftest import json_error
from tests.peer_agent.agents import AgentProcess, start_agent
from tests.peer_agent.rogue import RoguePeer
from tests.peer_agent.signal_bus import run, wait_until
from tests.signaling.conftest import ServerProcess, unique_name

LEGITIMATE_TEXTS = ("first legitimate message", "second legitimate message")


@dataclass
class AgentWitness:
    """The module's agent with its legitimate messages, and its log position."""

    agent: AgentProcess
    log_start: int = 0

    def new_log(self) -> str:
        with open(self.agent.log_path, errors="replace") as log:
            log.seek(self.log_start)
            return log.read()

    def refusals(self) -> list[dict[str, Any]]:
        events = self.agent.get("/api/events")["events"]
        return [e for e in events if e["kind"] == "refused"]

    def check(self) -> None:
        """The agent answers, logged no traceback, and holds each legitimate message once."""
        texts = self.agent.texts()
        for text in LEGITIMATE_TEXTS:
            assert texts.count(text) == 1, (text, texts)
        logged = self.new_log()
        assert "Traceback" not in logged, logged[-3000:]


@pytest.fixture(scope="module")
def module_agent(server: ServerProcess,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    agent = start_agent(server.url, unique_name("alice"), unique_name("room"),
                        tmp_path_factory.mktemp("hostile-agent"))
    try:
        for text in LEGITIMATE_TEXTS:
            agent.send(text)
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def alice(module_agent: AgentProcess) -> Iterator[AgentWitness]:
    witness = AgentWitness(module_agent, module_agent.log_path.stat().st_size)
    yield witness
    witness.check()


# -- the UI's JSON API ------------------------------------------------------------------------

JSON = "application/json"
UI_BODIES = [
    pytest.param(b'{"text": "\xff\xfe"}', JSON, 400, "invalid_json", id="invalid-utf8"),
    pytest.param(b'{"text": "hi"}', JSON + "; charset=klingon", 400, "invalid_json",
                 id="unknown-charset"),
    pytest.param('{"text": "hi"}'.encode("utf-16"), JSON + "; charset=utf-16", 400,
                 "invalid_json", id="utf-16-body"),
    pytest.param(("[" * 30_000 + "]" * 30_000).encode(), JSON, 400, "invalid_json",
                 id="nested-30000"),
    pytest.param(('{"text": ' + "1" * 5000 + "}").encode(), JSON, 400, "invalid_json",
                 id="number-5000-digits"),
    pytest.param(b'{"text": NaN}', JSON, 400, "invalid_json", id="nan"),
    pytest.param(b'{"text": "a", "text": "b"}', JSON, 400, "invalid_json", id="repeated-key"),
    pytest.param(b'{"text": "\\ud800"}', JSON, 400, "invalid_json", id="lone-surrogate"),
    pytest.param(b"", JSON, 400, "invalid_json", id="empty"),
    pytest.param(b'{"text": 42}', JSON, 400, "invalid_request", id="text-not-a-string"),
    pytest.param(b'["text"]', JSON, 400, "invalid_request", id="array"),
    pytest.param(b'{"text": ""}', JSON, 400, "invalid_envelope", id="text-empty"),
    pytest.param(b'{"text": "a\\u0000b"}', JSON, 400, "invalid_envelope", id="text-nul"),
    pytest.param(b'{"text": " \\t\\n "}', JSON, 400, "invalid_envelope", id="text-blank"),
    pytest.param(json.dumps({"text": "x" * 4001}).encode(), JSON, 400, "invalid_envelope",
                 id="text-4001-chars"),
    pytest.param(json.dumps({"text": "y" * 70_000}).encode(), JSON, 413, "too_large",
                 id="over-64k"),
    pytest.param(b"text=hello", "application/x-www-form-urlencoded", 415, "json_required",
                 id="form-post"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code"), UI_BODIES)
def test_hostile_post_to_the_ui_gets_a_clear_error(alice: AgentWitness, body: bytes,
                                                   content_type: str, status: int,
                                                   code: str) -> None:
    reply = requests.post(alice.agent.url + "/api/messages", data=body,
                          headers={"Content-Type": content_type}, timeout=10)
    assert reply.status_code == status, reply.text[:300]
    assert json_error(reply)["code"] == code


def test_an_undecodable_body_names_the_reason(alice: AgentWitness) -> None:
    reply = requests.post(alice.agent.url + "/api/messages", data=b'{"text": "\xff"}',
                          headers={"Content-Type": JSON}, timeout=10)
    assert "UTF-8" in json_error(reply)["message"]


@pytest.mark.parametrize(("headers", "code"), [
    pytest.param({"Origin": "evil://{host}"}, "cross_origin", id="origin-other-scheme"),
    pytest.param({"Origin": "https://{host}"}, "cross_origin", id="origin-https"),
    pytest.param({"Origin": "http://evil.example"}, "cross_origin", id="origin-other-site"),
    pytest.param({"Origin": "null"}, "cross_origin", id="origin-null"),
    pytest.param({"Host": "evil.example"}, "bad_host", id="dns-rebinding-host"),
])
def test_foreign_origins_are_refused(alice: AgentWitness, headers: dict[str, str],
                                     code: str) -> None:
    host = alice.agent.url.split("://", 1)[1]
    filled = {name: value.format(host=host) for name, value in headers.items()}
    reply = requests.post(alice.agent.url + "/api/messages", json={"text": "from afar"},
                          headers=filled, timeout=10)
    assert reply.status_code == 403
    assert json_error(reply)["code"] == code
    assert "from afar" not in alice.agent.texts()


def test_the_agents_own_origin_is_accepted(alice: AgentWitness) -> None:
    host = alice.agent.url.split("://", 1)[1]
    reply = requests.get(alice.agent.url + "/api/state", headers={"Origin": f"http://{host}"},
                         timeout=10)
    assert reply.status_code == 200


@pytest.mark.parametrize(("path", "status", "code"), [
    pytest.param("/api/messages?limit=abc", 400, "invalid_argument", id="limit-not-a-number"),
    pytest.param("/api/messages?before=garbage", 400, "invalid_argument", id="before-garbage"),
    pytest.param("/api/messages?before=" + "9" * 30 + ".x.1", 400, "invalid_argument",
                 id="before-huge"),
    pytest.param("/api/messages/nope:1/path", 404, "not_found", id="path-of-unknown-id"),
])
def test_hostile_ui_queries_are_refused(alice: AgentWitness, path: str, status: int,
                                        code: str) -> None:
    reply = requests.get(alice.agent.url + path, timeout=10)
    assert reply.status_code == status
    assert json_error(reply)["code"] == code


def test_an_overlong_note_is_refused(alice: AgentWitness) -> None:
    reply = requests.post(alice.agent.url + "/api/events", json={"text": "n" * 600},
                          timeout=10)
    assert reply.status_code == 400
    assert json_error(reply)["code"] == "invalid_argument"


# -- a rogue member's data channel and signals -------------------------------------------------

DEVICE = "d" * 32


def rogue_frames(rogue: RoguePeer, alice_name: str) -> list[tuple[str, Any, str]]:
    """(name, frame, words the refusal's reason holds) for each hostile frame."""
    tampered = dict(rogue.envelope("signed text").to_dict(), text="altered text")
    impostor = rogue.envelope("I am alice", author=alice_name).to_dict()
    future = rogue.envelope("from the far future", lamport=2**53 - 1).to_dict()
    other_room = dict(rogue.envelope("elsewhere").to_dict(), room="elsewhere")
    stranger = DeviceKey.generate()
    return [
        ("not-json", "this is not JSON", "not valid JSON"),
        ("nested", "[" * 8000 + "]" * 8000, "nested too deeply"),
        ("nan", '{"t":"vv","vector":{"' + DEVICE + '":NaN}}', "not a JSON number"),
        ("repeated-key", '{"t":"vv","t":"msg","vector":{}}', "more than once"),
        ("unknown-type", {"t": "no-such-frame"}, "no-such-frame"),
        ("array", [1, 2, 3], "JSON object"),
        ("tampered", {"t": "msg", "env": tampered}, "bad signature"),
        ("impostor", {"t": "msg", "env": impostor}, "belongs to"),
        ("lamport-ahead", {"t": "msg", "env": future}, "horizon"),
        ("other-room", {"t": "msg", "env": other_room}, "for room 'elsewhere'"),
        ("bool-seq", {"t": "msg", "env": {**impostor, "seq": True}}, "'seq'"),
        ("batch-101", {"t": "batch", "envs": [{}] * 101, "more": False}, "too many"),
        ("batch-more-int", {"t": "batch", "envs": [], "more": 1}, "'more'"),
        ("vv-float", {"t": "vv", "vector": {DEVICE: 1.5}}, "version vector"),
        ("vv-bad-device", {"t": "vv", "vector": {"x": 1}}, "version vector"),
        ("keys-mismatch", {"t": "keys", "devices": [
            {"id": DEVICE, "user": "eve", "public_key": stranger.public_key_b64}]},
         "belongs to device"),
        ("links-bad", {"t": "links", "links": [{"device": "me", "state": "up", "rtt_ms": 1}]},
         "links frame"),
        ("sig-bad-id", {"t": "sig", "id": "!", "to": DEVICE, "kind": "offer", "payload": {}},
         "relay frame"),
        ("sig-bad-kind", {"t": "sig", "id": "abcdefgh", "to": DEVICE, "kind": "evil",
                          "payload": {}}, "relay frame"),
        ("msg-extra-key", {"t": "msg", "env": tampered, "x": 1}, "wrong keys"),
        ("no-room", {"room": None, "t": "ack", "ids": []}, "needs 'room'"),
        ("foreign-room", {"room": "elsewhere", "t": "ack", "ids": []}, "not_in_room"),
        ("ping-in-room", {"t": "ping", "n": 1, "at": 1.0}, "belongs to the channel"),
    ]


@contextlib.asynccontextmanager
async def rogue_linked_to(server: ServerProcess, agent: AgentProcess) -> AsyncIterator[RoguePeer]:
    """A rogue member of the agent's room with an open data channel to it; closed afterwards."""
    device = agent.state()["device"]
    rogue = RoguePeer(server.url, str(agent.state()["room"]), unique_name("rogue"))
    await rogue.start()
    try:
        await wait_until(lambda: rogue.connected_to(device), timeout=30,
                         message=f"the rogue's channel to {agent.name}")
        yield rogue
    finally:
        await rogue.close()


def test_hostile_data_channel_frames_are_refused_with_their_reasons(
        server: ServerProcess, alice: AgentWitness) -> None:
    agent = alice.agent
    alice_device = agent.state()["device"]
    sent: list[str] = []

    async def body() -> None:
        async with rogue_linked_to(server, agent) as rogue:
            for name, frame, reason in rogue_frames(rogue, agent.name):
                before = len(alice.refusals())
                rogue.send_raw(alice_device, frame)
                await wait_until(lambda before=before: len(alice.refusals()) > before,
                                 timeout=10, message=f"alice refusing {name}")
                latest = alice.refusals()[-1]
                assert reason in latest["reason"] + latest["text"], (name, latest)
                sent.append(name)
            channel = rogue.mesh.links[alice_device]._channel
            assert channel is not None
            channel.send(b"\x00binary")  # binary frames are ignored by the mesh
            channel.send("x" * (MAX_FRAME_BYTES + 1))  # over the limit: refused unparsed
            good = rogue.envelope("a genuine message after it all")
            rogue.send_raw(alice_device, {"t": "msg", "env": good.to_dict()})
            await wait_until(lambda: "a genuine message after it all" in agent.texts(),
                             timeout=15, message="the good message after the bad ones")
            assert rogue.connected_to(alice_device)
            assert "too large" in alice.refusals()[-1]["reason"] + alice.refusals()[-1]["text"]

    run(body, timeout=90)
    assert len(sent) == 23
    assert sum(agent.state()["refused"].values()) >= len(sent) + 1


FORGED_SIGNALS = [
    ("offer", {"sdp": "v=0\r\na=fingerprint:sha-256 AA\r\n", "type": "offer",
               "fp_sig": b64encode(b"\x00" * 64)}),
    ("answer", {"sdp": "v=0\r\n", "type": "answer", "fp_sig": "x"}),
    ("candidate", {"candidate": 7, "sdpMid": "0"}),
    ("candidate", {"candidate": "candidate:not a candidate", "sdpMid": "0"}),
]


def test_forged_signals_are_counted_and_shown_as_refusals(
        server: ServerProcess, alice: AgentWitness) -> None:
    """A member's forged offer, answer or candidate, relayed by the server, used to be dropped
    silently; each is now counted in `refused` and shown in the timeline with its reason."""
    agent = alice.agent
    alice_device = agent.state()["device"]

    async def body() -> None:
        async with rogue_linked_to(server, agent) as rogue:
            before = agent.state()["refused"].get("signal_refused", 0)
            for kind, payload in FORGED_SIGNALS:
                assert await rogue.client.signal(alice_device, kind, payload)
            await wait_until(
                lambda: agent.state()["refused"].get("signal_refused", 0)
                >= before + len(FORGED_SIGNALS), timeout=15, message="signal refusals")
            shown = [e for e in alice.refusals() if "signal refused" in e.get("reason", "")]
            assert len(shown) >= len(FORGED_SIGNALS), shown
            assert rogue.connected_to(alice_device)  # an open link is left alone

    run(body, timeout=60)


# -- the rendezvous listener -------------------------------------------------------------------


def rendezvous_exchange(agent: AgentProcess, frame: str | bytes | None) -> dict[str, Any]:
    """Dial the agent's rendezvous listener, read its challenge, send `frame`, and return the
    listener's answer (a `refused` frame), or {"closed": True}."""
    address = agent.state()["rendezvous"]["address"]
    ws = websocket.create_connection(f"ws://{address}/rendezvous", timeout=10)
    try:
        challenge = json.loads(ws.recv())
        assert challenge["t"] == "challenge"
        if isinstance(frame, bytes):
            ws.send_binary(frame)
        elif frame is not None:
            ws.send(frame.replace("{nonce}", challenge["nonce"]))
        try:
            answer = ws.recv()
        except websocket.WebSocketConnectionClosedException:
            return {"closed": True}
        return json.loads(answer) if answer else {"closed": True}
    finally:
        ws.close()


def signed_hello(agent: AgentProcess, key: DeviceKey, user: str) -> str:
    """A well-formed hello signed by `key`, whose nonce placeholder is filled in later."""
    state = agent.state()
    nonce = b64encode(b"\x01" * NONCE_BYTES)
    sig = key.sign(dialer_proof_bytes(state["room"], key.device_id, state["device"],
                                      "NONCE", ""))
    return Hello(user, key.device_id, "", nonce, b64encode(sig)).encode()


@pytest.mark.parametrize(("frame", "reason"), [
    pytest.param("not json", "not valid JSON", id="not-json"),
    pytest.param("[" * 8000 + "]" * 8000, "nested too deeply", id="nested"),
    pytest.param('{"t":"hello"}', "wrong keys", id="hello-missing-keys"),
    pytest.param('{"t":"welcome","sig":"' + "A" * 86 + '"}', "expected a hello",
                 id="welcome-from-dialer"),
    pytest.param('{"t":"hello","user":"eve","device":"' + DEVICE + '","rendezvous":'
                 '"169.254.169.254:80","nonce":"{nonce}","sig":"' + "A" * 86 + '"}',
                 "'rendezvous'", id="hello-bad-address"),
    pytest.param("UNKNOWN-DEVICE", "vouched", id="hello-unknown-device"),
    pytest.param("x" * (MAX_FRAME_BYTES + 10), "too large", id="oversized"),
])
def test_hostile_rendezvous_frames_are_refused_with_a_reason(
        alice: AgentWitness, frame: str, reason: str) -> None:
    agent = alice.agent
    if frame == "UNKNOWN-DEVICE":
        frame = signed_hello(agent, DeviceKey.generate(), "eve")
    before = agent.state()["rendezvous"]["refused"]
    answer = rendezvous_exchange(agent, frame)
    assert answer.get("t") == "refused", answer
    assert reason in answer["reason"], answer
    poll(lambda: agent.state()["rendezvous"]["refused"] > before, timeout=10,
         message="the refusal counted")


def test_a_binary_rendezvous_frame_closes_the_handshake(alice: AgentWitness) -> None:
    agent = alice.agent
    before = agent.state()["rendezvous"]["refused"]
    answer = rendezvous_exchange(agent, b"\x00\x01")
    assert answer.get("t") == "refused" or answer.get("closed"), answer
    poll(lambda: agent.state()["rendezvous"]["refused"] > before, timeout=10,
         message="the refusal counted")


def test_a_silent_dialer_is_dropped_after_the_handshake_timeout(alice: AgentWitness) -> None:
    answer = rendezvous_exchange(alice.agent, None)
    assert answer.get("closed") or answer.get("t") == "refused", answer

