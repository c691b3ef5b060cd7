"""Hostile Socket.IO traffic: raw packets on a bare WebSocket, and well-formed events with
hostile contents. A packet the server cannot accept closes that one connection with one log
line; an event it refuses gets an error acknowledgement and the connection stays."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import websocket

from protocol.limits import MAX_SAFE_INTEGER
from tests.hostile.conftest import Witness
from tests.signaling.conftest import (
    Peer,
    connect_peer,
    register_account,
    signed_envelope,
    unique_name,
)

REFUSED_LINE = "refused a Socket.IO packet"


class RawSocket:
    """A Socket.IO connection spoken by hand over a WebSocket (Engine.IO 4): what a hostile
    client can send that the official clients never would."""

    def __init__(self, url: str, token: str | None) -> None:
        target = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(target, timeout=10)
        assert self.ws.recv().startswith("0{")  # Engine.IO open
        if token is not None:
            self.ws.send("40" + json.dumps({"token": token}))
            reply = self.ws.recv()
            assert reply.startswith('40{"sid"'), reply

    def send(self, packet: str | bytes) -> None:
        if isinstance(packet, bytes):
            self.ws.send_binary(packet)
        else:
            self.ws.send(packet)

    def closed_by_server(self, timeout: float = 10) -> bool:
        """Whether the server closes the connection (Engine.IO close packet or a WebSocket
        close) within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                message = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                return False
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                return True
            if message in ("", "1", b""):
                return True
            if message == "2":  # an Engine.IO ping: answer it, as a client must
                self.ws.send("3")
        return False

    def still_open(self) -> bool:
        """Whether the connection still works: a Socket.IO event gets its acknowledgement."""
        self.ws.send('4299["leave",{"room":"nowhere"}]')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self.ws.recv()
            if message.startswith("4399"):
                return True
            if message in ("", "1"):
                return False
        return False

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def raw(witness: Witness) -> Any:
    made: list[RawSocket] = []

    def make(signed_in: bool = True) -> RawSocket:
        sock = RawSocket(witness.server.url, witness.account.token if signed_in else None)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


ATTACHMENT = '["publish",{"_placeholder":true,"num":0}]'

# Packets after the Engine.IO message type "4": each is refused and closes the connection.
MALFORMED_PACKETS = [
    pytest.param("4zzz", id="unknown-type"),
    pytest.param("4\u00b9", id="superscript-digit-type"),  # "¹".isdigit(), found by fuzzing
    pytest.param('421{"a":1}', id="event-object-not-list"),
    pytest.param("42" + "[" * 20_000 + "]" * 20_000, id="event-nested-20000"),
    pytest.param("451-" + ATTACHMENT, id="binary-event"),
    pytest.param("49999999999-" + ATTACHMENT, id="binary-event-huge-count"),
    pytest.param("461-[{}]", id="binary-ack"),
    pytest.param(b"\x04" + b"\x00" * 1024, id="bare-binary-frame"),
    pytest.param('44{"message":"x"}', id="client-connect-error"),
    pytest.param("4", id="empty-packet"),
    pytest.param('42["join"', id="truncated-json"),
    pytest.param("42[1,2]", id="event-name-not-text"),
    pytest.param("42[]", id="event-empty"),
    pytest.param("43[]", id="ack-without-id"),
    pytest.param('42["publish",' + "7" * 5000 + "]", id="number-5000-digits"),
    pytest.param('42["publish",NaN]', id="nan"),
    pytest.param('42["join",{"room":"a","room":"b"}]', id="repeated-key"),
    pytest.param('42["join","\\udc00"]', id="lone-surrogate"),
    pytest.param("42" + "9" * 200 + '["join"]', id="id-too-long"),
]


@pytest.mark.parametrize("packet", MALFORMED_PACKETS)
def test_malformed_packet_closes_the_connection_with_one_log_line(
        witness: Witness, raw: Any, packet: str | bytes) -> None:
    sock = raw()
    sock.send(packet)
    assert sock.closed_by_server(), "the server kept the connection open"
    refusals = [line for line in witness.new_log().splitlines() if REFUSED_LINE in line]
    assert len(refusals) == 1, witness.new_log()[-2000:]
    assert "handler error" not in witness.new_log()


def test_binary_attachments_are_never_buffered(witness: Witness, raw: Any) -> None:
    """An attachment count of 999,999,999,999 used to make the server keep every 1 MB frame
    that followed; now the announcing packet itself closes the connection."""
    sock = raw()
    sock.send("4" + "5" + "9" * 9 + "-" + ATTACHMENT)
    for _ in range(3):
        try:
            sock.send(b"\x04" + b"\xaa" * 1_000_000)
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            break
    assert sock.closed_by_server()
    assert "binary" in witness.new_log()


def test_a_refused_packet_closes_only_its_own_connection(witness: Witness, raw: Any) -> None:
    bystander, hostile = raw(), raw()
    hostile.send("4zzz")
    assert hostile.closed_by_server()
    assert bystander.still_open()


def test_connection_with_a_forged_token_is_refused_with_one_line(
        witness: Witness, raw: Any) -> None:
    sock = raw(signed_in=False)
    sock.send('40{"token":"forged.token.value"}')
    reply = sock.ws.recv()
    assert reply.startswith("44"), reply
    assert "unauthorized" in reply
    lines = [line for line in witness.new_log().splitlines() if "refused" in line]
    assert len(lines) == 1, lines


def test_an_unknown_event_is_ignored_and_the_connection_stays(witness: Witness,
                                                               raw: Any) -> None:
    sock = raw()
    sock.send('421["no_such_event",{}]')
    assert sock.still_open()


# -- events with hostile contents -------------------------------------------------------------


@pytest.fixture(scope="module")
def member(room_witness: Witness) -> Any:
    """Another account of the module, connected and joined to the witness room; a refused
    event leaves its connection open, so every test shares it."""
    peer = connect_peer(register_account(room_witness.server.url, "member"))
    assert peer.join(room_witness.room)["ok"]
    yield peer
    peer.client.disconnect()


def refused(reply: Any, code: str) -> str:
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    return str(reply["error"]["message"])


JOINS = [
    pytest.param({"room": "r" * 300}, "invalid_request", id="room-300-chars"),
    pytest.param({"room": "a\u0000b"}, "invalid_request", id="room-nul"),
    pytest.param({"rendezvous": "169.254.169.254:8080"}, "invalid_request", id="metadata-addr"),
    pytest.param({"rendezvous": "[fe80::1]:4000"}, "invalid_request", id="link-local-v6"),
    pytest.param({"rendezvous": "internal.example:4000"}, "invalid_request", id="host-name"),
    pytest.param({"rendezvous": "0.0.0.0:4000"}, "invalid_request", id="unspecified"),
    pytest.param({"device": "f" * 32}, "unknown_device", id="someone-elses-device"),
]


@pytest.mark.parametrize(("override", "code"), JOINS)
def test_hostile_join_is_refused(witness: Witness, member: Peer, override: dict[str, Any],
                                 code: str) -> None:
    data = {"room": unique_name("room"), "device": member.account.key.device_id, **override}
    message = refused(member.call("join", data), code)
    if "rendezvous" in override:
        assert "rendezvous" in message


def test_link_local_rendezvous_is_refused_and_says_why(witness: Witness,
                                                       member: Peer) -> None:
    reply = member.call("join", {"room": witness.room, "device": member.account.key.device_id,
                                 "rendezvous": "169.254.169.254:8080"})
    assert "link-local" in refused(reply, "invalid_request")


SIGNALS = [
    pytest.param({"kind": "evil"}, "invalid_request", id="unknown-kind"),
    pytest.param({"payload": {"sdp": "x" * 20_000}}, "invalid_request", id="payload-20k"),
    pytest.param({"payload": "not an object"}, "invalid_request", id="payload-text"),
    pytest.param({"to": "0" * 32}, "no_such_peer", id="absent-device"),
    pytest.param({"room": "never-joined-room"}, "not_in_room", id="room-not-joined"),
    pytest.param({"from": {"user": "alice"}}, "invalid_request", id="spoofed-from"),
]


@pytest.mark.parametrize(("override", "code"), SIGNALS)
def test_hostile_signal_is_refused(witness: Witness, member: Peer, override: dict[str, Any],
                                   code: str) -> None:
    data = {"room": witness.room, "to": witness.account.key.device_id, "kind": "offer",
            "payload": {"sdp": "v=0"}, **override}
    refused(member.call("signal", data), code)


def test_hostile_envelopes_are_refused_each_with_its_reason(witness: Witness,
                                                            member: Peer) -> None:
    account, room = member.account, witness.room
    tampered = dict(signed_envelope(account, room, 1), text="changed after signing")
    impostor = signed_envelope(account, room, 2, author=witness.account.username)
    ahead = signed_envelope(account, room, 3, lamport=MAX_SAFE_INTEGER)
    extra = dict(signed_envelope(account, room, 4), extra=1)
    boolean = dict(signed_envelope(account, room, 5), seq=True)
    elsewhere = signed_envelope(account, unique_name("room"), 6)
    cases = [(tampered, "bad_signature"), (impostor, "unknown_author"),
             (ahead, "lamport_ahead"), (extra, "invalid_envelope"),
             (boolean, "invalid_envelope"), (elsewhere, "not_in_room")]
    for envelope, code in cases:
        refused(member.call("publish", {"envelope": envelope}), code)
    good = signed_envelope(account, room, 7)
    assert member.call("publish", {"envelope": good})["ok"]
    conflict = dict(signed_envelope(account, room, 7, text="same id, other text"))
    refused(member.call("publish", {"envelope": conflict}), "conflict")
    too_many = [signed_envelope(account, room, n) for n in range(10, 111)]
    refused(member.call("publish", {"envelopes": too_many}), "invalid_request")
    refused(member.call("publish", {"envelope": good, "envelopes": [good]}), "invalid_request")
