"""The WebRTC mesh with real aiortc peers over 127.0.0.1, joined by an in-memory signal bus."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from peer_agent import negotiation
from peer_agent.mesh import LinkState, PeerInfo
from protocol import (
    FINGERPRINT_DOMAIN,
    MAX_FRAME_BYTES,
    DeviceKey,
    FrameTooLarge,
    b64decode,
    b64encode,
    canonical_bytes,
)
from protocol.fingerprint import sdp_fingerprint
from tests.peer_agent.signal_bus import (
    Room,
    candidate_addresses,
    run,
    sorted_keys,
    wait_until,
)

CONNECTED = LinkState.CONNECTED


def test_three_devices_form_a_full_mesh_and_a_broadcast_reaches_each_other_once() -> None:
    async def body() -> None:
        async with Room() as room:
            alice, bob, carol = room.join("alice"), room.join("bob"), room.join("carol")
            room.share_roster()
            await wait_until(room.fully_connected, message="a full mesh")
            assert all(len(m.mesh.links) == 2 for m in room.members)

            assert sorted(alice.mesh.broadcast("hello")) == sorted([bob.device, carol.device])
            alice.mesh.broadcast("done")
            await wait_until(lambda: all(m.texts_from(alice)[-1:] == ["done"]
                                         for m in (bob, carol)), message="both frames")
            # Ping and pong frames stay inside the mesh.
            assert bob.frames == [(alice.device, "hello"), (alice.device, "done")]
            assert carol.frames == [(alice.device, "hello"), (alice.device, "done")]
            assert alice.frames == []

    run(body)


def test_the_smaller_device_id_offers_and_offers_never_cross() -> None:
    async def body() -> None:
        async with Room() as room:
            members = [room.join(name, key) for name, key in
                       zip(("alice", "bob", "carol"), sorted_keys(3), strict=True)]
            room.share_roster()
            await wait_until(room.fully_connected, message="a full mesh")

            for i, small in enumerate(members):
                for large in members[i + 1:]:
                    assert room.bus.count("offer", small.device, large.device) == 1
                    assert room.bus.count("answer", large.device, small.device) == 1
                    assert room.bus.count("offer", large.device, small.device) == 0
                    assert small.mesh.links[large.device].offerer
                    assert not large.mesh.links[small.device].offerer
            assert room.bus.count("offer") == 3 and room.bus.count("answer") == 3

    run(body)


def test_gathered_candidates_are_only_loopback() -> None:
    async def body() -> None:
        async with Room() as room:
            room.join("alice"), room.join("bob")
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")

            descriptions = [s for s in room.bus.sent if s.kind in ("offer", "answer")]
            assert len(descriptions) == 2
            for signal in descriptions:
                addresses = candidate_addresses(signal.payload["sdp"])
                assert addresses and set(addresses) == {"127.0.0.1"}

    run(body)


def test_channel_opens_and_rtt_is_measured_by_ping() -> None:
    async def body() -> None:
        async with Room(ping_interval=0.1) as room:
            alice, bob = room.join("alice"), room.join("bob")
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")
            links = [alice.mesh.links[bob.device], bob.mesh.links[alice.device]]
            await wait_until(lambda: all(link.rtt_ms is not None for link in links),
                             timeout=2.0, message="an RTT on both sides")
            for link in links:
                assert link.rtt_ms is not None and 0 < link.rtt_ms < 1000
                assert link.connect_ms is not None and 0 < link.connect_ms < 5000
            assert alice.frames == [] and bob.frames == []

    run(body)


def test_an_oversized_frame_is_refused_and_never_sent() -> None:
    async def body() -> None:
        async with Room() as room:
            alice, bob = room.join("alice"), room.join("bob")
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")

            at_limit = "é" * (MAX_FRAME_BYTES // 2)  # two bytes each: exactly the limit
            with pytest.raises(FrameTooLarge):
                alice.mesh.send(bob.device, at_limit + "x")
            with pytest.raises(FrameTooLarge):
                alice.mesh.broadcast("x" * (MAX_FRAME_BYTES + 1))
            assert alice.mesh.send(bob.device, at_limit)
            assert alice.mesh.send(bob.device, "done")
            await wait_until(lambda: bob.texts_from(alice)[-1:] == ["done"], message="frames")
            assert bob.texts_from(alice) == [at_limit, "done"]

    run(body)


def test_send_to_a_device_without_an_open_channel_returns_false() -> None:
    async def body() -> None:
        async with Room() as room:
            alice = room.join("alice")
            assert alice.mesh.send("0" * 32, "hello") is False
            assert alice.mesh.broadcast("hello") == []

    run(body)


# A man in the middle of the signaling path, one way each.

def _flip_signature(payload: dict[str, Any]) -> dict[str, Any]:
    signature = bytearray(b64decode(payload["fp_sig"]))
    signature[0] ^= 1
    return {**payload, "fp_sig": b64encode(bytes(signature))}


def _swap_fingerprint(payload: dict[str, Any]) -> dict[str, Any]:
    # The attacker's own certificate: the signature, made for the real one, no longer matches.
    fake = "sha-256 " + ":".join(["AB"] * 32)
    sdp = re.sub(r"^a=fingerprint:.*$", f"a=fingerprint:{fake}", payload["sdp"], flags=re.M)
    return {**payload, "sdp": sdp}


STRANGER = DeviceKey.generate()


def _sign_with_stranger(sender: str, to: str) -> Any:
    def resign(payload: dict[str, Any]) -> dict[str, Any]:
        fingerprint = sdp_fingerprint(payload["sdp"])
        signed = canonical_bytes(FINGERPRINT_DOMAIN, ["lobby", sender, to, fingerprint])
        return {**payload, "fp_sig": b64encode(STRANGER.sign(signed))}
    return resign


@pytest.mark.parametrize(("kind", "attack"), [
    ("offer", "flipped signature"),
    ("answer", "flipped signature"),
    ("offer", "signed by a key not in the roster"),
    ("answer", "fingerprint swapped in the SDP"),
    ("offer", "roster gives the device to another user"),
])
def test_a_forged_fingerprint_signature_is_refused(kind: str, attack: str) -> None:
    async def body() -> None:
        async with Room(connect_timeout=0.5) as room:
            small_key, large_key = sorted_keys(2)
            alice, bob = room.join("alice", small_key), room.join("bob", large_key)
            # The offer goes from alice (smaller id) to bob; the answer comes back.
            victim, sender = (bob, alice) if kind == "offer" else (alice, bob)

            def tamper(frm: str, to: str, k: str, payload: dict[str, Any]) -> Any:
                if k != kind:
                    return [(k, payload)]
                if attack == "flipped signature":
                    payload = _flip_signature(payload)
                elif attack == "signed by a key not in the roster":
                    payload = _sign_with_stranger(frm, to)(payload)
                elif attack == "fingerprint swapped in the SDP":
                    payload = _swap_fingerprint(payload)
                return [(k, payload)]

            room.bus.tamper = tamper
            if attack == "roster gives the device to another user":
                roster = [p if p.device != sender.device else
                          PeerInfo("mallory", p.device, p.public_key) for p in room.roster()]
                victim.mesh.update_roster(roster)
                sender.mesh.update_roster(room.roster())
            else:
                room.share_roster()

            # Refused at least twice: the first offer and the offerer's retry after it failed.
            await wait_until(lambda: victim.mesh.refused_signals >= 2, timeout=5.0,
                             message="refusals")
            assert victim.saw(sender, LinkState.FAILED)
            for a, b in ((alice, bob), (bob, alice)):
                assert not a.saw(b, CONNECTED)
            assert alice.frames == [] and bob.frames == []
            assert alice.mesh.broadcast("secret") == []
            if kind == "offer":
                assert room.bus.count("answer") == 0  # a refused offer is not answered

    run(body)


@pytest.mark.parametrize("case", [
    "device outside the roster", "answer with no offer pending", "offer from the larger id",
    "unknown kind", "malformed offer", "garbage candidate",
])
def test_unexpected_signals_are_refused_without_crashing(case: str) -> None:
    async def body() -> None:
        async with Room(connect_timeout=5.0) as room:
            small_key, large_key = sorted_keys(2)
            alice, bob = room.join("alice", small_key), room.join("bob", large_key)
            room.bus.tamper = lambda frm, to, k, p: []  # the server relays nothing here
            room.share_roster()
            # Never connected: only its offer SDP is used. No STUN server, ever.
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.createDataChannel("gibberish")
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            await pc.close()
            payload = {"sdp": sdp, "type": "offer", "fp_sig": "AAAA"}

            if case == "device outside the roster":
                await bob.mesh.handle_signal("eve", "f" * 32, "offer", payload)
                expected = 1
            elif case == "answer with no offer pending":
                await bob.mesh.handle_signal("alice", alice.device, "answer",
                                             {**payload, "type": "answer"})
                expected = 1
            elif case == "offer from the larger id":
                await alice.mesh.handle_signal("bob", bob.device, "offer", payload)
                expected = 1
            elif case == "unknown kind":
                await bob.mesh.handle_signal("alice", alice.device, "hangup", {})
                expected = 1
            elif case == "malformed offer":
                await bob.mesh.handle_signal("alice", alice.device, "offer", {"sdp": 3})
                expected = 1
            else:
                await bob.mesh.handle_signal("alice", alice.device, "candidate",
                                             {"candidate": "candidate:nonsense"})
                expected = 0  # ignored: no negotiation is under way
            assert alice.mesh.refused_signals + bob.mesh.refused_signals == expected
            assert room.bus.count("answer") == 0
            assert not alice.saw(bob, CONNECTED) and not bob.saw(alice, CONNECTED)

    run(body)


def test_a_closed_peer_leaves_connected_on_the_others() -> None:
    async def body() -> None:
        async with Room() as room:
            alice, bob, carol = room.join("alice"), room.join("bob"), room.join("carol")
            room.share_roster()
            await wait_until(room.fully_connected, message="a full mesh")

            await carol.mesh.close()
            room.bus.unregister(carol.device)
            await wait_until(lambda: alice.state_of(carol) is not CONNECTED
                             and bob.state_of(carol) is not CONNECTED,
                             timeout=3.0, message="the others to notice")
            assert alice.saw(carol, LinkState.FAILED) and bob.saw(carol, LinkState.FAILED)
            assert carol.saw(alice, LinkState.CLOSED) and carol.saw(bob, LinkState.CLOSED)
            assert alice.state_of(bob) is CONNECTED
            assert carol.mesh.links == {}

    run(body)


def test_peer_left_closes_the_link_and_does_not_retry() -> None:
    async def body() -> None:
        async with Room() as room:
            small_key, large_key = sorted_keys(2)
            alice, bob = room.join("alice", small_key), room.join("bob", large_key)
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")

            alice.mesh.peer_left(bob.device)  # alice is the offering side
            assert alice.states[-1] == (bob.device, LinkState.CLOSED)
            assert bob.device not in alice.mesh.links
            await wait_until(lambda: bob.state_of(alice) is LinkState.FAILED, timeout=3.0,
                             message="bob to see the channel close")
            # Absence of a retry can only be shown by waiting: ten retry_base periods.
            await asyncio.sleep(0.5)
            assert room.bus.count("offer") == 1
            assert alice.states[-1] == (bob.device, LinkState.CLOSED)

    run(body)


@pytest.mark.parametrize("returning", ["smallest id (it offers)", "largest id (it answers)"])
def test_a_returning_device_rejoins_the_mesh(returning: str) -> None:
    async def body() -> None:
        async with Room(connect_timeout=1.0) as room:
            keys = sorted_keys(3)
            members = [room.join(name, key) for name, key in
                       zip(("alice", "bob", "carol"), keys, strict=True)]
            room.share_roster()
            await wait_until(room.fully_connected, message="a full mesh")

            gone = members[0] if returning.startswith("smallest") else members[2]
            others = [m for m in members if m is not gone]
            await gone.mesh.close()
            room.bus.unregister(gone.device)
            room.members.remove(gone)
            await wait_until(lambda: all(m.state_of(gone) is LinkState.FAILED for m in others),
                             timeout=3.0, message="the others to notice")

            back = room.join(gone.user, gone.key)  # a new process with the same device key
            room.share_roster(back)
            await wait_until(room.fully_connected, timeout=8.0, message="the mesh to heal")
            back.mesh.broadcast("back")
            await wait_until(lambda: all(m.texts_from(back) == ["back"] for m in others),
                             message="a frame from the returning device")

    run(body, timeout=20.0)


def test_a_frozen_peer_is_detected_by_missing_pongs() -> None:
    async def body() -> None:
        async with Room(ping_interval=0.1, ping_timeout=0.5, recover_grace=0.5) as room:
            alice, bob = room.join("alice"), room.join("bob")
            room.share_roster()
            await wait_until(room.fully_connected, message="a link")

            # Fake a frozen peer: bob's connection stays up but he stops sending frames.
            bob.mesh._send_on = lambda link, text, **_: False  # type: ignore[method-assign]
            await wait_until(lambda: alice.saw(bob, LinkState.FAILED), timeout=3.0,
                             message="alice to give up on bob")
            # First disconnected (kept, in case it recovers), then failed after the grace.
            seen = [state for device, state in alice.states if device == bob.device]
            assert seen.index(LinkState.DISCONNECTED) < seen.index(LinkState.FAILED)

    run(body)


def test_trickled_candidates_from_a_browser_style_peer_connect() -> None:
    async def body() -> None:
        async with Room() as room:
            alice, bob = room.join("alice"), room.join("bob")

            def trickle(frm: str, to: str, kind: str, payload: dict[str, Any]) -> Any:
                # As a browser does: the description without candidates, then one by one.
                if kind not in ("offer", "answer"):
                    return [(kind, payload)]
                lines = payload["sdp"].splitlines()
                candidates = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
                mid = next(ln[6:] for ln in lines if ln.startswith("a=mid:"))
                kept = [ln for ln in lines
                        if not ln.startswith(("a=candidate:", "a=end-of-candidates"))]
                signals = [(kind, {**payload, "sdp": "\r\n".join(kept) + "\r\n"})]
                signals += [("candidate", {"candidate": c, "sdpMid": mid, "sdpMLineIndex": 0})
                            for c in candidates]
                signals.append(("candidate", {"candidate": "", "sdpMid": mid,
                                              "sdpMLineIndex": 0}))
                return signals

            room.bus.tamper = trickle
            room.share_roster()
            await wait_until(room.fully_connected, message="a link from trickled candidates")
            assert alice.mesh.refused_signals == 0 and bob.mesh.refused_signals == 0

    run(body)


def test_close_leaves_no_task_behind() -> None:
    async def body() -> None:
        before = asyncio.all_tasks()
        async with Room(ping_interval=0.1) as room:
            room.join("alice"), room.join("bob"), room.join("carol")
            room.share_roster()
            await wait_until(room.fully_connected, message="a full mesh")
        await wait_until(lambda: asyncio.all_tasks() <= before, timeout=2.0,
                         message=f"tasks to end: {asyncio.all_tasks() - before}")

    run(body)


def test_a_pinned_mesh_uses_no_stun_or_turn_server(monkeypatch: pytest.MonkeyPatch) -> None:
    configurations: list[RTCConfiguration] = []

    class ConfigurationRecorder(RTCPeerConnection):
        """Records the configuration, then fails before gathering could reach any server."""

        def __init__(self, configuration: RTCConfiguration) -> None:
            configurations.append(configuration)
            raise RuntimeError("stop before gathering")

    monkeypatch.setattr(negotiation, "RTCPeerConnection", ConfigurationRecorder)
    servers = [{"urls": "turn:192.0.2.1:3478", "username": "u", "credential": "c"}]

    async def body() -> None:
        async with Room(ice_servers=servers) as room:
            small_key, large_key = sorted_keys(2)
            alice, bob = room.join("alice", small_key), room.join("bob", large_key)
            assert alice.mesh.ice_servers == [{**servers[0], "credentialType": "password"}]
            room.share_roster()
            await wait_until(lambda: alice.saw(bob, LinkState.FAILED), message="the attempt")
            assert configurations and all(c.iceServers == [] for c in configurations)

    run(body)
