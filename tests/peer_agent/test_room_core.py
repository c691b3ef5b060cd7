"""The room core, frames in and effects out, with no network, no event loop and no clock: a
log made of dicts stands for the agent's SQLite log (the core only reads it)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from peer_agent.room_core import (
    Event,
    Peer,
    RefreshKeys,
    Refuse,
    RoomCore,
    RoomEffect,
    Send,
    SendKeys,
    SendMissing,
    Show,
    ShowDelivery,
    Store,
)
from protocol import MAX_BATCH, DeviceKey, Envelope, ProtocolError, VersionVector
from protocol.catchup import CatchUp
from protocol.channel import AckFrame, BatchFrame, MsgFrame, VectorFrame, parse_channel_frame
from protocol.limits import LAMPORT_LEAD_MS
from tests.helpers import ROOT

ROOM = "lobby"
NOW_MS = 1_700_000_000_000


class DictLog:
    """The log as the core reads it: keys, envelopes held, a vector and gaps, from plain
    dicts."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, str]] = {}
        self.seqs: dict[str, int] = {}
        self.held: dict[str, Envelope] = {}

    def key_for(self, device: str) -> tuple[str, str] | None:
        return self.keys.get(device)

    def holds_each(self, envs: Sequence[Envelope]) -> list[bool]:
        return [self.held.get(env.id) == env for env in envs]

    def vector(self, room: str) -> VersionVector:
        return VersionVector(self.seqs)

    def gaps(self, room: str) -> Mapping[str, Sequence[int]]:
        return {}


def setup() -> tuple[RoomCore, DictLog, DeviceKey, Peer]:
    log = DictLog()
    bob = DeviceKey.generate()
    log.keys[bob.device_id] = ("bob", bob.public_key_b64)
    core = RoomCore(ROOM, DeviceKey.generate().device_id, log, CatchUp())
    return core, log, bob, Peer("bob", bob.device_id)


def envelope(key: DeviceKey, seq: int = 1, lamport: int = 1, author: str = "bob",
             text: str = "hi") -> Envelope:
    return Envelope.create(key, room=ROOM, author=author, seq=seq, lamport=lamport,
                           ts=NOW_MS, text=text)


def test_a_live_message_is_stored_then_acknowledged_and_shown() -> None:
    core, _, bob, peer = setup()
    env = envelope(bob)
    effects = core.frame(peer, MsgFrame(env), 0.0, NOW_MS)
    assert effects == [Store((env,), peer, True, 1)]
    after = core.stored(effects[0], [env], 0.0)
    assert Send(bob.device_id, AckFrame((env.id,))) in after
    assert Show(env) in after


def test_a_replayed_live_message_is_acknowledged_not_shown_and_said() -> None:
    core, _, bob, peer = setup()
    env = envelope(bob)
    store = core.frame(peer, MsgFrame(env), 0.0, NOW_MS)[0]
    assert isinstance(store, Store)
    after = core.stored(store, [], 0.0)
    assert not [e for e in after if isinstance(e, Show)]
    assert any(isinstance(e, Event) and "replayed" in e.text for e in after)


def test_live_messages_of_one_turn_are_stored_per_peer_and_each_acknowledged_exactly() -> None:
    core, log, bob, peer = setup()
    carol = DeviceKey.generate()
    log.keys[carol.device_id] = ("carol", carol.public_key_b64)
    from_carol = Peer("carol", carol.device_id)
    b1, b2 = envelope(bob, 1, text="b1"), envelope(bob, 2, lamport=2, text="b2")
    c1 = envelope(carol, 1, author="carol", text="c1")
    forged = Envelope.from_dict(dict(envelope(carol, 2, 2, "carol").to_dict(), text="x"))
    effects = core.live([(peer, b1), (from_carol, c1), (from_carol, forged), (peer, b2),
                         (peer, b1)], NOW_MS)  # b1 replayed within the turn
    refused = [e for e in effects if isinstance(e, Refuse)]
    assert [(e.peer, e.code) for e in refused] == [(from_carol, "bad_signature")]
    stores = [e for e in effects if isinstance(e, Store)]
    assert stores == [Store((b1, b2, b1), peer, True, 3), Store((c1,), from_carol, True, 2)]
    after_bob = core.stored(stores[0], [b1, b2], 0.0)
    assert [e for e in after_bob if isinstance(e, Send)] == [
        Send(bob.device_id, AckFrame((b1.id, b2.id)))]
    assert [e.envelope for e in after_bob if isinstance(e, Show)] == [b1, b2]
    assert any(isinstance(e, Event) and f"replayed: {b1.id}" in e.fields["reason"]
               for e in after_bob)
    after_carol = core.stored(stores[1], [c1], 0.0)
    assert [e for e in after_carol if isinstance(e, Send)] == [
        Send(carol.device_id, AckFrame((c1.id,)))]


def test_a_sync_batch_is_acknowledged_only_for_the_senders_own_messages() -> None:
    core, log, bob, peer = setup()
    carol = DeviceKey.generate()
    log.keys[carol.device_id] = ("carol", carol.public_key_b64)
    b1, c1 = envelope(bob, 1), envelope(carol, 1, author="carol")
    store = core.frame(peer, BatchFrame((b1, c1), more=True), 0.0, NOW_MS)[-1]
    assert isinstance(store, Store)
    after = core.stored(store, [b1, c1], 0.0)
    assert [e for e in after if isinstance(e, Send)] == [Send(bob.device_id, AckFrame((b1.id,)))]
    relayed = core.frame(peer, BatchFrame((envelope(carol, 2, 2, "carol"),), more=True),
                         0.0, NOW_MS)[-1]
    assert isinstance(relayed, Store)
    assert not [e for e in core.stored(relayed, list(relayed.envelopes), 0.0)
                if isinstance(e, Send)], "none of bob's own: no receipt"


def test_a_forged_message_is_refused_and_not_stored() -> None:
    core, _, bob, peer = setup()
    env = envelope(bob)
    forged = Envelope.from_dict(dict(env.to_dict(), text="altered"))
    effects = core.frame(peer, MsgFrame(forged), 0.0, NOW_MS)
    assert [type(e) for e in effects] == [Refuse, Store]
    assert effects[1] == Store((), peer, True, 1)
    refused = effects[0]
    assert isinstance(refused, Refuse) and refused.code == "bad_signature"


def test_a_message_the_log_holds_is_taken_again_without_its_key() -> None:
    # Its copy in the log was verified when stored; the signature is not checked again (the
    # key being gone shows it: checking would refuse it as from an unknown device).
    core, log, bob, peer = setup()
    env = envelope(bob)
    log.held[env.id] = env
    del log.keys[bob.device_id]
    effects = core.frame(peer, MsgFrame(env), 0.0, NOW_MS)
    assert effects == [Store((env,), peer, True, 1)]


def test_a_different_message_under_a_held_id_is_still_verified() -> None:
    core, log, bob, peer = setup()
    env = envelope(bob)
    log.held[env.id] = env
    forged = Envelope.from_dict(dict(env.to_dict(), text="altered"))
    effects = core.frame(peer, MsgFrame(forged), 0.0, NOW_MS)
    assert [type(e) for e in effects] == [Refuse, Store]
    assert effects[1] == Store((), peer, True, 1)


def test_a_message_arriving_by_several_paths_at_once_is_verified_once() -> None:
    # Live from bob, then in carol's sync batch and from the server before the first copy
    # was stored: only the first is checked (bob's key is gone by then).
    core, log, bob, peer = setup()
    carol = Peer("carol", DeviceKey.generate().device_id)
    env = envelope(bob)
    assert core.frame(peer, MsgFrame(env), 0.0, NOW_MS) == [Store((env,), peer, True, 1)]
    del log.keys[bob.device_id]
    batch = parse_channel_frame('{"t":"batch","more":true,"envs":[' + env.to_json() + "]}")
    assert core.frame(carol, batch, 0.0, NOW_MS) == [Store((env,), carol, False, 1)]
    assert core.verify_all([env.to_dict()], None, NOW_MS, []) == [env]
    forged = Envelope.from_dict(dict(env.to_dict(), text="altered"))
    effects: list[RoomEffect] = []
    assert core.verify_all([forged], None, NOW_MS, effects) == []
    assert [type(e) for e in effects] == [RefreshKeys, Refuse]


def test_a_forged_envelope_in_a_sync_batch_is_refused_and_the_rest_stored() -> None:
    core, log, bob, peer = setup()
    core.verify_pool = ThreadPoolExecutor(2)
    envs = [envelope(bob, seq=n, lamport=n, text=f"message {n}") for n in range(1, MAX_BATCH + 1)]
    envs[40] = Envelope.from_dict(dict(envs[40].to_dict(), text="altered"))
    log.held[envs[7].id] = envs[7]
    effects = core.frame(peer, BatchFrame(tuple(envs), more=True), 0.0, NOW_MS)
    refused = [e for e in effects if isinstance(e, Refuse)]
    assert [(e.code, envs[40].id in e.reason) for e in refused] == [("bad_signature", True)]
    assert effects[-1] == Store(tuple(envs[:40] + envs[41:]), peer, False, MAX_BATCH)
    core.verify_pool.shutdown()


def test_a_batch_asks_the_log_once_per_device_and_once_for_what_it_holds() -> None:
    core, log, bob, peer = setup()
    asked: list[str] = []

    class CountingLog(DictLog):
        def key_for(self, device: str) -> tuple[str, str] | None:
            asked.append(f"key {device}")
            return super().key_for(device)

        def holds_each(self, envs: Sequence[Envelope]) -> list[bool]:
            asked.append(f"holds {len(envs)}")
            return super().holds_each(envs)

    counting = CountingLog()
    counting.keys = log.keys
    core.log = counting
    batch = tuple(envelope(bob, seq=n, lamport=n) for n in range(1, MAX_BATCH + 1))
    assert core.frame(peer, BatchFrame(batch, more=True), 0.0, NOW_MS)[-1] == Store(
        batch, peer, False, MAX_BATCH)
    assert asked == [f"holds {MAX_BATCH}", f"key {bob.device_id}"]


def test_an_impostor_of_another_user_is_refused() -> None:
    core, _, bob, peer = setup()
    effects = core.frame(peer, MsgFrame(envelope(bob, author="alice")), 0.0, NOW_MS)
    assert isinstance(effects[0], Refuse) and "belongs to 'bob'" in effects[0].reason
    assert effects[0].code == "unknown_author"


def test_an_unknown_device_asks_for_the_keys_once() -> None:
    core, _, _, peer = setup()
    stranger = DeviceKey.generate()
    batch = parse_channel_frame(
        '{"t":"batch","more":false,"envs":['
        + ",".join(envelope(stranger, seq=n).to_json() for n in (1, 2)) + "]}")
    effects = core.frame(peer, batch, 0.0, NOW_MS)
    assert [type(e) for e in effects].count(RefreshKeys) == 1
    assert [e.code for e in effects if isinstance(e, Refuse)] == ["unknown_device"] * 2


def test_a_lamport_time_past_the_horizon_is_refused_for_now() -> None:
    core, _, bob, peer = setup()
    env = envelope(bob, lamport=NOW_MS + LAMPORT_LEAD_MS + 1)
    refused = core.frame(peer, MsgFrame(env), 0.0, NOW_MS)[0]
    assert isinstance(refused, Refuse) and refused.code == "lamport_ahead"
    later = core.frame(peer, MsgFrame(env), 0.0, NOW_MS + 2)[0]
    assert later == Store((env,), peer, True, 1)


def test_a_vector_is_answered_with_what_it_lacks() -> None:
    core, _, bob, peer = setup()
    theirs = VersionVector({"a" * 32: 3})
    effects = core.frame(peer, VectorFrame(theirs), 0.0, NOW_MS)
    assert effects[0] == SendMissing(bob.device_id, theirs)


def test_an_open_link_pulls_and_gets_the_keys() -> None:
    core, _, bob, peer = setup()
    effects = core.link_up(peer, 0.0)
    assert effects == [Send(bob.device_id, VectorFrame(VersionVector())), SendKeys(bob.device_id)]


def test_a_receipt_counts_a_peer_once_for_our_message() -> None:
    core, _, bob, peer = setup()
    mine = envelope(DeviceKey.generate(), author="alice")
    core.posted(mine)
    first = core.frame(peer, AckFrame((mine.id, "nobody:1")), 0.0, NOW_MS)
    again = core.frame(peer, AckFrame((mine.id,)), 0.0, NOW_MS)
    assert ShowDelivery(mine.id) in first and again == []
    assert core.delivery[mine.id].peers == {bob.device_id}


def test_the_server_storing_a_message_updates_the_delivery_of_ours_only() -> None:
    core, _, bob, _ = setup()
    mine = f"{core.device}:1"
    effects = core.server_named({mine: 7, f"{bob.device_id}:1": 8}, 0.0)
    assert [e for e in effects if isinstance(e, ShowDelivery)] == [ShowDelivery(mine)]
    assert core.delivery[mine].server and list(core.delivery) == [mine]


def test_a_malformed_frame_is_refused_with_its_reason() -> None:
    core, _, _, peer = setup()
    with pytest.raises(ProtocolError) as caught:
        parse_channel_frame('{"t":"no-such-frame"}')
    [refused] = core.refused(peer, caught.value)
    assert "no-such-frame" in refused.reason


def test_the_core_imports_without_asyncio_or_aiortc() -> None:
    code = ("import sys\n"
            "for name in ('asyncio', 'aiortc', 'aiohttp', 'socketio', 'sqlite3'):\n"
            "    sys.modules[name] = None\n"
            "import peer_agent.room_core, protocol.channel\n"
            "print('ok')\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.stderr,
                                                                  time.monotonic() - started)
