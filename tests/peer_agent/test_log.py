"""The agent's local SQLite log: gapless seqs that survive restarts and threads, the outbox,
the same merge rules as protocol.MessageLog, keyset paging, and a file that stays consistent
when the process is killed mid-write. Every test uses a real SQLite file."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer_agent.log import LocalLog, PathStep
from peer_agent.log_marks import UNREAD_QUERY
from peer_agent.log_server import OUTBOX_QUERY
from protocol import (
    Conflict,
    DeviceKey,
    Envelope,
    InvalidEnvelope,
    MessageLog,
    VersionVector,
    display_sorted,
    vector_of,
)
from tests.helpers import ROOT, read_line_matching


def fixed_key(name: str) -> DeviceKey:
    return DeviceKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


KEYS = sorted((fixed_key(f"log device {n}") for n in range(3)), key=lambda k: k.device_id)
ME, BOB, CAROL = KEYS
AUTHORS = {ME.device_id: "alice", BOB.device_id: "bob", CAROL.device_id: "carol"}


@cache
def envelope(
    key: DeviceKey, seq: int, lamport: int | None = None, text: str = "", room: str = "lobby"
) -> Envelope:
    """A signed envelope, cached: the equivalence property reuses the same few many times."""
    return Envelope.create(
        key,
        room=room,
        author=AUTHORS[key.device_id],
        seq=seq,
        lamport=seq if lamport is None else lamport,
        ts=1_700_000_000_000 + seq,
        text=text or f"message {seq}",
    )


def peer_origin(key: DeviceKey) -> str:
    return f"peer:{key.device_id}"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LocalLog]:
    with LocalLog(tmp_path / "log.sqlite3") as opened:
        yield opened


# --- own seqs -----------------------------------------------------------------------------------


def test_authored_seqs_have_no_gaps_and_continue_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with LocalLog(path) as first:
        sent = [first.author_message(ME, "lobby", "alice", f"hi {n}", n) for n in range(5)]
    with LocalLog(path) as again:
        sent += [again.author_message(ME, "lobby", "alice", f"hi {n}", n) for n in range(3)]
        assert [env.seq for env in sent] == list(range(1, 9))
        assert again.vector("lobby") == VersionVector({ME.device_id: 8})
        assert [env.lamport for env in sent] == list(range(1, 9))
        for env in sent:
            env.verify(ME.public_key_b64)


def test_each_room_has_its_own_seqs(log: LocalLog) -> None:
    assert log.author_message(ME, "lobby", "alice", "a", 0).seq == 1
    assert log.author_message(ME, "kitchen", "alice", "b", 0).seq == 1
    assert log.author_message(ME, "lobby", "alice", "c", 0).seq == 2


def test_an_invalid_message_uses_no_seq(log: LocalLog) -> None:
    with pytest.raises(InvalidEnvelope, match="'text'"):
        log.author_message(ME, "lobby", "alice", "   ", 0)
    assert log.author_message(ME, "lobby", "alice", "fine", 0).seq == 1
    assert log.count("lobby") == 1


def test_a_seq_of_this_device_held_from_elsewhere_is_never_reused(log: LocalLog) -> None:
    # Its own older messages came back from the server, e.g. after the log file was lost.
    log.add_many([envelope(ME, 1), envelope(ME, 2)], "server")
    assert log.author_message(ME, "lobby", "alice", "again", 0).seq == 3


@pytest.mark.parametrize("shared", [True, False], ids=["one connection", "one per thread"])
def test_concurrent_authors_never_reuse_a_seq(tmp_path: Path, shared: bool) -> None:
    path = tmp_path / "log.sqlite3"
    common = LocalLog(path)
    logs = [common if shared else LocalLog(path) for _ in range(6)]
    sent: list[Envelope] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(logs))

    def author(log: LocalLog, n: int) -> None:
        try:
            start.wait()
            for i in range(20):
                sent.append(log.author_message(ME, "lobby", "alice", f"{n}/{i}", 0))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=author, args=(log, n)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for log in {id(log): log for log in logs}.values():
        log.close()

    assert not errors
    assert sorted(env.seq for env in sent) == list(range(1, 121))
    # Each message saw every earlier one: lamport grows with seq.
    by_seq = sorted(sent, key=lambda env: env.seq)
    assert [env.lamport for env in by_seq] == list(range(1, 121))
    with LocalLog(path) as reopened:
        assert reopened.count("lobby") == 120
        assert reopened.outbox_count("lobby") == 120


# --- lamport, duplicates and conflicts ----------------------------------------------------------


def test_new_message_lamport_is_one_past_the_highest_in_its_room(log: LocalLog) -> None:
    log.add(envelope(BOB, 1, lamport=41), peer_origin(BOB))
    log.add(envelope(CAROL, 1, lamport=7), peer_origin(CAROL))
    log.add(envelope(BOB, 1, lamport=99, room="kitchen"), peer_origin(BOB))
    assert log.max_lamport("lobby") == 41
    assert log.author_message(ME, "lobby", "alice", "hi", 0).lamport == 42
    assert log.max_lamport("elsewhere") == 0


def test_the_same_envelope_is_stored_once(log: LocalLog) -> None:
    env = envelope(BOB, 1)
    assert log.add(env, peer_origin(BOB)) is True
    assert log.add(Envelope.from_json(env.to_json()), peer_origin(CAROL)) is False
    assert log.add_many([env, env], "server") == []
    assert log.count("lobby") == 1
    assert log.get("lobby", env.id) == env


def test_a_different_envelope_under_a_held_id_conflicts_and_the_first_is_kept(
    log: LocalLog,
) -> None:
    first = envelope(BOB, 1, text="first")
    rival = envelope(BOB, 1, text="rival")
    log.add(first, peer_origin(BOB))
    with pytest.raises(Conflict, match="the first one is kept") as info:
        log.add(rival, peer_origin(CAROL))
    assert info.value.code == "conflict"
    assert log.get("lobby", first.id) == first
    assert log.conflicts == 1


def test_holds_answers_only_for_the_very_envelope_held(log: LocalLog) -> None:
    env = envelope(BOB, 1)
    assert not log.holds(env)
    log.add(env, peer_origin(BOB))
    assert log.holds(env)
    assert not log.holds(Envelope.from_dict(dict(env.to_dict(), text="altered")))
    assert not log.holds(Envelope.from_dict(dict(env.to_dict(), room="kitchen")))


def test_holds_each_answers_like_holds_for_a_whole_page(log: LocalLog) -> None:
    held = [envelope(BOB, seq) for seq in range(1, 701)]
    log.add_many(held, peer_origin(BOB))
    asked = [*held[::2], envelope(BOB, 701), held[3],
             Envelope.from_dict(dict(held[5].to_dict(), text="altered")),
             Envelope.from_dict(dict(held[6].to_dict(), room="kitchen"))]
    assert log.holds_each(asked) == [log.holds(env) for env in asked]
    assert log.holds_each(asked) == [True] * 350 + [False, True, False, False]
    assert log.holds_each([]) == []


def test_add_many_skips_conflicts_and_returns_only_new_envelopes(log: LocalLog) -> None:
    log.add(envelope(BOB, 2, text="first"), peer_origin(BOB))
    batch = [envelope(BOB, 1), envelope(BOB, 2, text="rival"), envelope(BOB, 2, text="first"),
             envelope(BOB, 3), envelope(BOB, 1)]
    assert log.add_many(batch, peer_origin(CAROL)) == [envelope(BOB, 1), envelope(BOB, 3)]
    assert log.conflicts == 1
    assert log.get("lobby", envelope(BOB, 2).id) == envelope(BOB, 2, text="first")


def test_rooms_do_not_share_ids(log: LocalLog) -> None:
    assert log.add(envelope(BOB, 1, room="lobby"), peer_origin(BOB))
    assert log.add(envelope(BOB, 1, text="other", room="kitchen"), peer_origin(BOB))
    assert log.count("lobby") == log.count("kitchen") == 1


def test_an_unknown_origin_is_refused(log: LocalLog) -> None:
    with pytest.raises(ValueError, match="origin"):
        log.add(envelope(BOB, 1), "peer:bob")


def test_get_answers_none_for_unknown_or_malformed_ids(log: LocalLog) -> None:
    log.add(envelope(BOB, 1), peer_origin(BOB))
    assert log.get("lobby", f"{BOB.device_id}:2") is None
    assert log.get("kitchen", f"{BOB.device_id}:1") is None
    assert log.get("lobby", "nonsense") is None


# --- gaps and vectors ---------------------------------------------------------------------------


def test_vector_counts_contiguous_seqs_and_advances_when_a_gap_fills(log: LocalLog) -> None:
    log.add_many([envelope(BOB, seq) for seq in (1, 2, 4, 5, 7)], peer_origin(BOB))
    assert log.vector("lobby") == VersionVector({BOB.device_id: 2})
    assert log.gaps("lobby") == {BOB.device_id: [3, 6]}
    log.add(envelope(BOB, 3), peer_origin(BOB))
    assert log.vector("lobby") == VersionVector({BOB.device_id: 5})
    log.add(envelope(BOB, 6), peer_origin(BOB))
    assert log.vector("lobby") == VersionVector({BOB.device_id: 7})
    assert log.gaps("lobby") == {}


def test_a_device_without_its_first_seq_counts_zero(log: LocalLog) -> None:
    log.add(envelope(BOB, 3), peer_origin(BOB))
    assert log.vector("lobby") == VersionVector()
    assert log.gaps("lobby", limit=1) == {BOB.device_id: [1]}


# --- the outbox and the server cursor -----------------------------------------------------------


def test_authored_message_waits_in_the_outbox_until_uploaded(log: LocalLog) -> None:
    env = log.author_message(ME, "lobby", "alice", "hello", 0)
    assert log.outbox_pending("lobby") == [env]
    assert not log.on_server("lobby", env.id)
    log.mark_uploaded("lobby", {env.id: 17})
    assert log.outbox_pending("lobby") == []
    assert log.outbox_count("lobby") == 0
    assert log.on_server("lobby", env.id)


def test_messages_from_peers_enter_the_outbox_but_not_those_from_the_server(
    log: LocalLog,
) -> None:
    from_peer = envelope(BOB, 1)
    from_server = envelope(CAROL, 1)
    log.add(from_peer, peer_origin(BOB))
    log.add(from_server, "server")
    assert log.outbox_pending("lobby") == [from_peer]
    assert log.on_server("lobby", from_server.id)


def test_another_devices_message_waits_its_grace_before_it_is_ours_to_upload(
    tmp_path: Path,
) -> None:
    now = [1_000.0]
    with LocalLog(tmp_path / "log.sqlite3", clock=lambda: now[0]) as held:
        mine = held.author_message(ME, "lobby", "alice", "mine", 0)
        theirs = envelope(BOB, 1)
        held.add(theirs, peer_origin(BOB))  # received at 1,000,000 ms
        # Received after the cut-off: its author is likely uploading it; ours go at once.
        assert held.outbox_pending("lobby", others_received_by=999_999) == [mine]
        settled = held.outbox_pending("lobby", others_received_by=1_000_000)
        assert {e.id for e in settled} == {mine.id, theirs.id} and len(settled) == 2
        assert held.outbox_count("lobby") == 2


def test_a_message_the_server_already_stored_skips_the_outbox(log: LocalLog) -> None:
    env = envelope(BOB, 1)
    log.mark_known_by_server("lobby", {env.id: 5})
    log.add(env, peer_origin(BOB))
    assert log.outbox_count("lobby") == 0
    assert log.on_server("lobby", env.id)


def test_the_stored_event_takes_held_messages_out_of_the_outbox(log: LocalLog) -> None:
    env = envelope(BOB, 1)
    log.add(env, peer_origin(BOB))
    log.mark_known_by_server("lobby", {env.id: 5})
    assert log.outbox_count("lobby") == 0


def test_a_held_message_that_arrives_from_the_server_leaves_the_outbox(log: LocalLog) -> None:
    env = envelope(BOB, 1)
    log.add(env, peer_origin(BOB))
    assert log.add(env, "server") is False
    assert log.outbox_count("lobby") == 0


def test_a_history_page_is_stored_with_its_server_cursors(log: LocalLog) -> None:
    """Read from the server's history: a new envelope goes in with its cursor (no outbox, no
    mark afterwards), a held one gets its cursor and leaves the outbox, and an id holding
    another envelope is not uploaded either: the server holds that id."""
    held, fresh = envelope(BOB, 1), envelope(BOB, 2)
    log.add(held, peer_origin(BOB))
    ours = envelope(CAROL, 1)
    log.add(ours, peer_origin(CAROL))
    theirs = envelope(CAROL, 1, lamport=99)
    assert log.outbox_count("lobby") == 2
    added = log.add_many([held, fresh, theirs], "server",
                         {held.id: 7, fresh.id: 8, theirs.id: 9})
    assert added == [fresh]
    assert log.outbox_count("lobby") == 0
    assert all(log.on_server("lobby", e.id) for e in (held, fresh, ours))
    assert log.get("lobby", ours.id) == ours, "the first envelope of an id is kept"
    assert log.vector("lobby").get(BOB.device_id) == 2
    cursors = dict(log._db.execute("SELECT device || ':' || seq, server_cursor FROM messages"))
    assert cursors == {held.id: 7, fresh.id: 8, ours.id: 9}


def test_outbox_is_served_oldest_first_in_bounded_batches(log: LocalLog) -> None:
    log.add_many([envelope(BOB, seq, lamport=10 - seq) for seq in range(1, 6)], peer_origin(BOB))
    mine = log.author_message(ME, "lobby", "alice", "late", 0)
    pending = log.outbox_pending("lobby", limit=3)
    assert [env.lamport for env in pending] == [5, 6, 7]
    log.mark_uploaded("lobby", {env.id: n for n, env in enumerate(pending)})
    assert log.outbox_pending("lobby") == [envelope(BOB, 2, 8), envelope(BOB, 1, 9), mine]


def test_messages_refused_for_good_can_be_dropped_from_the_outbox(log: LocalLog) -> None:
    env = envelope(BOB, 1)
    log.add(env, peer_origin(BOB))
    log.drop_from_outbox("lobby", [env.id])
    assert log.outbox_count("lobby") == 0
    assert log.get("lobby", env.id) == env


def test_malformed_ids_are_refused_when_marking_uploads(log: LocalLog) -> None:
    with pytest.raises(ValueError, match="not an envelope id"):
        log.mark_uploaded("lobby", {"bob:1": 3})


def test_server_cursor_starts_at_zero_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with LocalLog(path) as first:
        assert first.server_cursor("lobby") == 0
        first.set_server_cursor("lobby", 1234)
    with LocalLog(path) as again:
        assert again.server_cursor("lobby") == 1234
        assert again.server_cursor("kitchen") == 0


# --- device keys --------------------------------------------------------------------------------


def test_device_keys_are_remembered_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with LocalLog(path) as first:
        assert first.remember_key(BOB.device_id, "bob", BOB.public_key_b64, "server")
        assert not first.remember_key(BOB.device_id, "bob", BOB.public_key_b64, "server")
    with LocalLog(path) as again:
        assert again.key_for(BOB.device_id) == ("bob", BOB.public_key_b64)
        assert again.key_for(CAROL.device_id) is None
        assert [(k.id, k.user) for k in again.known_keys()] == [(BOB.device_id, "bob")]


def test_a_peer_claim_never_replaces_what_the_server_said(log: LocalLog) -> None:
    log.remember_key(BOB.device_id, "bob", BOB.public_key_b64, "server")
    assert not log.remember_key(BOB.device_id, "mallory", BOB.public_key_b64, peer_origin(CAROL))
    assert log.key_for(BOB.device_id) == ("bob", BOB.public_key_b64)


def test_the_server_corrects_what_a_peer_claimed(log: LocalLog) -> None:
    log.remember_key(BOB.device_id, "mallory", BOB.public_key_b64, peer_origin(CAROL))
    assert log.remember_key(BOB.device_id, "bob", BOB.public_key_b64, "server")
    assert log.key_for(BOB.device_id) == ("bob", BOB.public_key_b64)


def test_a_key_of_another_device_is_refused(log: LocalLog) -> None:
    with pytest.raises(InvalidEnvelope, match="belongs to device"):
        log.remember_key(BOB.device_id, "bob", CAROL.public_key_b64, "server")
    assert log.key_for(BOB.device_id) is None


STORER = """
import hashlib, sys
from peer_agent.log import LocalLog
from protocol import DeviceKey, Envelope

def key(name):
    return DeviceKey.from_private_bytes(hashlib.sha256(name.encode()).digest())

me, peer = key("storer"), key("peer")
log = LocalLog(sys.argv[1])
n = 0
while True:
    n += 1
    mine = log.author_message(me, "lobby", "alice", f"message {n}", n)
    print("held", mine.id, flush=True)  # as the UI is told it is sent
    reply = Envelope.create(peer, room="lobby", author="bob", seq=n, lamport=n, ts=n,
                            text=f"reply {n}")
    assert log.add_many([reply], "peer:" + peer.device_id) == [reply]
    print("held", reply.id, flush=True)  # as a receipt tells its author
"""

# As the agent stores one loop turn's live messages: several peers' stores in one batch,
# acknowledged (printed) only once the batch has committed.
BATCH_STORER = """
import hashlib, sys
from peer_agent.log import LocalLog
from protocol import DeviceKey, Envelope

def key(name):
    return DeviceKey.from_private_bytes(hashlib.sha256(name.encode()).digest())

peers = [key(f"peer {p}") for p in range(3)]
log = LocalLog(sys.argv[1])
n = 0
while True:
    n += 1
    with log.batch():
        fresh = [log.add_many([Envelope.create(k, room="lobby", author=f"user{p}", seq=n,
                                               lamport=n, ts=n, text=f"reply {n}")],
                              "peer:" + k.device_id) for p, k in enumerate(peers)]
    for stored in fresh:
        print("held", stored[0].id, flush=True)
"""


@pytest.mark.parametrize("script", [STORER, BATCH_STORER], ids=["one by one", "batched"])
def test_what_a_call_stored_is_held_after_the_process_is_killed(tmp_path: Path,
                                                                script: str) -> None:
    # Commits are not fsync'd for received envelopes (synchronous = NORMAL), but a process
    # killed right after a call (or a batch of them) returned still leaves its envelopes in
    # the file.
    path = tmp_path / "log.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    try:
        while len(said) < 300:
            said.append(read_line_matching(proc, "held", timeout=20).split()[1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    check_consistent(path)
    with LocalLog(path) as log:
        assert [i for i in said if log.get("lobby", i) is None] == []


def test_a_batch_commits_its_writes_together_and_a_failed_one_undoes_only_itself(
        log: LocalLog) -> None:
    first, second = envelope(BOB, 1), envelope(BOB, 2)
    with log.batch():
        assert log.add_many([first], peer_origin(BOB)) == [first]
        with pytest.raises(ZeroDivisionError), log._write() as db:  # a write that fails
            log._insert(db, envelope(CAROL, 1), "server")
            raise ZeroDivisionError
        with pytest.raises(RuntimeError):  # a seq of ours is fsync'd: never inside a batch
            log.author_message(ME, "lobby", "alice", "mine", 1)
        assert log.add_many([second], peer_origin(BOB)) == [second]
    assert [e.id for e in log.page("lobby")] == [first.id, second.id]
    assert log.vector("lobby") == VersionVector({BOB.device_id: 2})


def test_a_batch_that_fails_leaves_nothing_of_it(log: LocalLog) -> None:
    with pytest.raises(KeyError), log.batch():
        log.add_many([envelope(BOB, 1)], peer_origin(BOB))
        raise KeyError("the loop turn failed")
    assert log.page("lobby") == []
    assert log.add_many([envelope(BOB, 1)], peer_origin(BOB)) == [envelope(BOB, 1)]


# --- the file -----------------------------------------------------------------------------------


def test_the_file_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    LocalLog(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
    finally:
        db.close()


def as_schema_2(db: sqlite3.Connection) -> None:
    """Rewrite a file's outbox as schemas 1 and 2 had it: no Lamport time, no index of its own."""
    db.execute("DROP INDEX outbox_order")
    db.execute("ALTER TABLE outbox RENAME TO outbox_3")
    db.execute("""CREATE TABLE outbox (room TEXT NOT NULL, device TEXT NOT NULL,
        seq INTEGER NOT NULL, PRIMARY KEY (room, device, seq),
        FOREIGN KEY (room, device, seq) REFERENCES messages (room, device, seq)) WITHOUT ROWID""")
    db.execute("INSERT INTO outbox SELECT room, device, seq FROM outbox_3")
    db.execute("DROP TABLE outbox_3")
    db.execute("PRAGMA user_version = 2")


def test_a_schema_1_file_is_migrated_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with LocalLog(path) as log:
        log.add(envelope(KEYS[0], 1, text="from before the paths"), "server")
    db = sqlite3.connect(path)
    as_schema_2(db)
    db.execute("DROP TABLE message_path")  # what schema 1 wrote
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with LocalLog(path) as log:
        assert [e.text for e in log.page("lobby")] == ["from before the paths"]
        message_id = envelope(KEYS[0], 1).id
        log.add_path_steps("lobby", [PathStep(message_id, 5, "received", {"via": "server"})])
        assert log.path("lobby", message_id) == [
            PathStep(message_id, 5, "received", {"via": "server"})]


def test_a_message_keeps_one_server_step_and_its_own_upload_wins(log: LocalLog) -> None:
    mine, theirs = "a" * 32 + ":1", "b" * 32 + ":1"
    log.add_path_steps("lobby", [
        PathStep(mine, 1, "authored"),
        PathStep(mine, 2, "on_server", {"cursor": 7}),   # the broadcast overtook the reply
        PathStep(mine, 3, "uploaded", {"cursor": 7}),
        PathStep(theirs, 1, "received", {"via": "channel"}),
        PathStep(theirs, 2, "on_server", {"cursor": 8}),
    ])
    log.add_path_steps("lobby", [PathStep(mine, 4, "on_server", {"cursor": 7}),
                                 PathStep(theirs, 3, "on_server", {"cursor": 8})])
    assert [(s.what, s.detail) for s in log.path("lobby", mine)] == [
        ("authored", {}), ("uploaded", {"cursor": 7})]
    assert [s.what for s in log.path("lobby", theirs)] == ["received", "on_server"]
    assert log.path("kitchen", mine) == []


def test_steps_sharing_one_detail_are_each_written_with_it_in_order(log: LocalLog) -> None:
    # A sync batch's steps share one detail (encoded once); runs of them are written
    # together, and a server step between two runs still sees the steps before it.
    shared = {"via": "sync", "text": "received from bob by anti-entropy (sync batch)"}
    ids = [f"{'c' * 32}:{n}" for n in range(1, 5)]
    log.add_path_steps("lobby", [
        PathStep(ids[0], 1, "received", shared),
        PathStep(ids[1], 1, "received", shared),
        PathStep(ids[1], 2, "on_server", {"cursor": 3}),
        PathStep(ids[1], 3, "on_server", {"cursor": 3}),  # one server step: skipped
        PathStep(ids[2], 1, "received", shared),
        PathStep(ids[3], 1, "received", shared),
    ])
    for message_id in ids:
        assert log.path("lobby", message_id)[0] == PathStep(message_id, 1, "received", shared)
    assert [s.what for s in log.path("lobby", ids[1])] == ["received", "on_server"]


def test_a_schema_2_file_keeps_its_outbox_in_display_order(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    waiting = [envelope(BOB, 1, 9), envelope(CAROL, 1, 2), envelope(BOB, 2, 5)]
    with LocalLog(path) as log:
        log.add_many(waiting, peer_origin(BOB))
    db = sqlite3.connect(path)
    as_schema_2(db)
    db.commit()
    db.close()
    with LocalLog(path) as log:
        assert log.outbox_pending("lobby") == sorted(waiting, key=lambda e: (e.lamport, e.device))
        log.add(envelope(CAROL, 2, 3), peer_origin(CAROL))
        assert [e.lamport for e in log.outbox_pending("lobby")] == [2, 3, 5, 9]


def test_the_next_upload_is_read_from_the_outbox_not_by_walking_the_room(log: LocalLog) -> None:
    # Walking the room's messages in display order to find the outbox's cost 33 ms an upload
    # round in a room of 100,000 messages; the outbox's own index costs the batch.
    plan = log._db.execute("EXPLAIN QUERY PLAN " + OUTBOX_QUERY, ("lobby", 0, 100)).fetchall()
    assert "USING COVERING INDEX outbox_order" in plan[0][3], plan


def test_unread_counts_others_messages_since_the_room_was_last_read(log: LocalLog) -> None:
    log.add_many([envelope(BOB, 1), envelope(BOB, 2)], peer_origin(BOB))
    log.add_many([envelope(CAROL, 1, room="kitchen")], peer_origin(CAROL))
    assert (log.unread("lobby"), log.unread("kitchen")) == (2, 1)
    assert log.rooms() == ["kitchen", "lobby"]
    log.mark_read("lobby")
    # Messages of another room, and this device's own, never count.
    log.add_many([envelope(CAROL, 2, room="kitchen")], peer_origin(CAROL))
    log.add(envelope(ME, 1), "self")
    assert (log.unread("lobby"), log.unread("kitchen")) == (0, 2)
    log.add_many([envelope(BOB, 3), envelope(CAROL, 1)], peer_origin(BOB))
    assert log.unread("lobby") == 2
    log.mark_read("kitchen")
    assert (log.unread("lobby"), log.unread("kitchen")) == (2, 0)


def test_the_unread_count_reads_what_arrived_after_the_marker_not_the_room(
        log: LocalLog) -> None:
    # Counting the room's rows after the marker through the room's index walked all of them:
    # 7.4 ms on opening a room of 100,000 messages read up to its last.
    plan = log._db.execute("EXPLAIN QUERY PLAN " + UNREAD_QUERY, (0, "lobby")).fetchall()
    assert "INTEGER PRIMARY KEY (rowid>?)" in plan[0][3], plan


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="newer Gibberish"):
        LocalLog(path)


# --- paging -------------------------------------------------------------------------------------


def test_paging_back_by_keyset_walks_the_whole_log_once(log: LocalLog) -> None:
    rng = random.Random(7)
    envs = [
        envelope(key, seq, lamport=rng.randint(1, 40))  # many equal lamports: ties by device
        for key in KEYS
        for seq in range(1, 81)
    ]
    log.add_many(envs, "server")
    log.add_many([envelope(BOB, 1, room="kitchen")], "server")

    walked: list[Envelope] = []
    before: tuple[int, str, int] | None = None
    while page := log.page("lobby", before, limit=17):
        assert len(page) <= 17
        assert page == display_sorted(page)
        walked = page + walked
        before = page[0].order_key
    assert walked == display_sorted(envs)
    assert log.page("lobby", None, limit=5) == display_sorted(envs)[-5:]


# --- the same rules as protocol.MessageLog ------------------------------------------------------

ROOM_EXTRAS = [envelope(BOB, seq, room="kitchen") for seq in (1, 2, 5)]


@st.composite
def operations(draw: st.DrawFn) -> list[list[Envelope]]:
    """Groups of envelopes to add, a group of one through `add`, others through `add_many`;
    with duplicates, conflicts (a second text under an id) and gaps."""
    groups = []
    for _ in range(draw(st.integers(0, 8))):
        group = []
        for _ in range(draw(st.integers(1, 5))):
            key = draw(st.sampled_from(KEYS))
            seq = draw(st.integers(1, 7))
            lamport = draw(st.integers(1, 6))
            text = draw(st.sampled_from(["", "rival"]))
            group.append(envelope(key, seq, lamport, text))
        groups.append(group)
    return groups


def outcome(add: Callable[[Envelope], bool], env: Envelope) -> object:
    """What adding `env` did: its result, or Conflict."""
    try:
        return add(env)
    except Conflict:
        return Conflict


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_local_log_follows_the_same_rules_as_message_log(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    groups = data.draw(operations())
    model = MessageLog("lobby")
    with LocalLog(tmp_path_factory.mktemp("equivalence") / "log.sqlite3") as log:
        log.add_many(ROOM_EXTRAS, "server")

        def log_add(env: Envelope) -> bool:
            return log.add(env, "server")

        for group in groups:
            if len(group) == 1:
                assert outcome(log_add, group[0]) == outcome(model.add, group[0])
            else:
                assert len(log.add_many(group, "server")) == model.merge(group)

        assert log.count("lobby") == len(model)
        assert log.max_lamport("lobby") == model.max_lamport
        assert log.page("lobby", None, limit=1000) == model.ordered()
        assert log.vector("lobby") == model.vector()
        gap_limit = data.draw(st.integers(1, 4), label="gap limit")
        assert log.gaps("lobby", gap_limit) == model.gaps(gap_limit)
        for env in model.ordered():
            assert log.get("lobby", env.id) == env

        for _ in range(3):
            peer = VersionVector(
                {key.device_id: data.draw(st.integers(0, 8), label="peer seq") for key in KEYS}
            )
            limit = data.draw(st.integers(1, 12), label="limit")
            after = data.draw(
                st.none() | st.tuples(st.sampled_from([k.device_id for k in KEYS]),
                                      st.integers(0, 8)),
                label="after",
            )
            max_bytes = data.draw(st.none() | st.integers(100, 2000), label="max bytes")
            assert log.missing_for(
                "lobby", peer, limit, after=after, max_bytes=max_bytes
            ) == model.missing_for(peer, limit, after=after, max_bytes=max_bytes)


# --- a killed writer leaves a consistent file ---------------------------------------------------

WRITER = """
import hashlib, sys
from peer_agent.log import LocalLog, PathStep
from protocol import DeviceKey, Envelope

def key(name):
    return DeviceKey.from_private_bytes(hashlib.sha256(name.encode()).digest())

me, peer = key("writer"), key("peer")
log = LocalLog(sys.argv[1])
n = log.count("lobby")
written = 0
while True:
    log.author_message(me, "lobby", "alice", f"message {n}", n)
    seq = log.vector("lobby").get(peer.device_id) + 1
    reply = Envelope.create(peer, room="lobby", author="bob", seq=seq, lamport=n + 1, ts=n,
                            text="reply " * (n % 50 + 1))
    log.add_many([reply], "peer:" + peer.device_id)
    n += 1
    written += 1
    if written % 25 == 0:
        log.mark_uploaded("lobby", {f"{me.device_id}:{log.vector('lobby').get(me.device_id)}": n})
    if written == 40:
        print("writing", flush=True)
"""


def check_consistent(path: Path) -> int:
    """Assert the file's invariants hold; return how many messages it holds."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        ids = db.execute("SELECT device, seq FROM messages WHERE room = 'lobby'").fetchall()
        by_device: dict[str, list[int]] = {}
        for device, seq in ids:
            by_device.setdefault(device, []).append(seq)
        for seqs in by_device.values():
            assert sorted(seqs) == list(range(1, len(seqs) + 1)), "a stored seq is missing"
        orphans = db.execute(
            "SELECT COUNT(*) FROM outbox o LEFT JOIN messages m USING (room, device, seq) "
            "WHERE m.seq IS NULL"
        ).fetchone()
        assert orphans == (0,), "an outbox entry has no message"
        heads = dict(db.execute("SELECT device, contiguous FROM heads WHERE room = 'lobby'"))
        assert VersionVector(heads) == vector_of(ids)
        for device, next_seq in db.execute("SELECT device, next_seq FROM own_seq"):
            assert next_seq == len(by_device[device]) + 1
        return len(ids)
    finally:
        db.close()


def test_a_writer_killed_mid_write_leaves_a_consistent_file(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    held = 0
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            read_line_matching(proc, "writing", timeout=20)
            time.sleep(0.05 + 0.07 * round_)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        now = check_consistent(path)
        assert now > held
        held = now

    with LocalLog(path) as log:
        writer = fixed_key("writer")
        mine = log.vector("lobby").get(writer.device_id)
        env = log.author_message(writer, "lobby", "alice", "after the crash", 0)
        assert env.seq == mine + 1
        assert env.lamport == max(e.lamport for e in log.page("lobby", None, 3)[:-1]) + 1
