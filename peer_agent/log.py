"""The agent's local log: one SQLite file in its data dir with every room's envelopes, its own
seq counters, the outbox of uploads, the server cursor, the device keys it has learnt and the
steps of each message's path (for the network view).

Its merge rules are protocol.MessageLog's, on disk: one envelope per id (the first one stored
wins), the display order (lamport, device, seq), version vectors of contiguous seqs, and the
same "what does the peer lack" answer. Envelopes given to it must already be verified.

Calls are short and synchronous; the agent makes them from a thread (`asyncio.to_thread`) or in
small batches. One connection per LocalLog, guarded by a lock, so threads may share one.

Durability: the file is in WAL mode with `synchronous = NORMAL`, so a commit is an append to
the WAL with no fsync. A committed transaction survives the process being killed (SIGKILL, a
crash): the WAL is in the kernel's page cache and the next open replays it. Only a power loss
or a kernel crash can take back the last commits before the next checkpoint, and the file stays
consistent even then. That is the line drawn for received envelopes, receipts, path steps and
the server's bookkeeping: everything a receipt or the UI vouched for is on disk once the call
that stored it returns, and what a power loss takes back comes again from the peers or the
server. This device's own messages are the exception: `author_message` commits with
`synchronous = FULL` (an fsync of the WAL, which also makes every earlier commit durable),
because a seq handed out and sent to peers must never be handed out again, even after a power
loss. The agent commits its posts in groups instead (`author_message(durable=False)`, then
`sync()`: one fsync of the WAL, off the event loop, for every post committed before it began;
`peer_agent.group_sync`): a post is neither sent nor acknowledged to the UI before that fsync, so
a seq a power loss could take back was never seen by anyone. (Measured by
`python -m bench.receive_path` and `bench.mesh`; docs/benchmarks.md. Deferring commits to the
end of an event-loop turn instead was not done: a receipt or a UI push queued in that turn
could leave before the commit.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from types import TracebackType
from typing import Any

from protocol import (
    MAX_BATCH,
    Conflict,
    DeviceKey,
    Envelope,
    InvalidEnvelope,
    VersionVector,
    device_id_for,
    is_normalized_username,
    load_public_key,
    next_lamport,
)
from protocol.envelope import DEVICE_ID
from protocol.limits import MAX_SAFE_INTEGER
from protocol.sync import KnownDevice

SCHEMA_VERSION = 2
"""Stored in `PRAGMA user_version`; a later schema migrates forward from it on open."""

AUTHORITATIVE_SOURCES = frozenset({"self", "server"})
"""Sources of device keys that replace what peers said; a peer's claim never replaces them."""

_SCHEMA = (
    # Envelopes of every room. origin: 'self', 'peer:<device>' or 'server'; server_cursor is set
    # once the server is known to hold the envelope.
    """CREATE TABLE messages (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        author TEXT NOT NULL,
        lamport INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        text TEXT NOT NULL,
        sig TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        origin TEXT NOT NULL
            CHECK (origin IN ('self', 'server') OR origin LIKE 'peer:%'),
        server_cursor INTEGER,
        PRIMARY KEY (room, device, seq)
    )""",
    "CREATE INDEX messages_display_order ON messages (room, lamport, device, seq)",
    # Per device with any envelope held: the highest contiguous seq (the version vector entry)
    # and the highest seq; kept in the same transaction as every insert.
    """CREATE TABLE heads (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        contiguous INTEGER NOT NULL,
        highest INTEGER NOT NULL,
        PRIMARY KEY (room, device)
    ) WITHOUT ROWID""",
    # The next seq this agent's device uses in a room; only ever grows.
    """CREATE TABLE own_seq (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        next_seq INTEGER NOT NULL,
        PRIMARY KEY (room, device)
    ) WITHOUT ROWID""",
    # Envelopes the server is not known to hold yet, whoever authored them.
    """CREATE TABLE outbox (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (room, device, seq),
        FOREIGN KEY (room, device, seq) REFERENCES messages (room, device, seq)
    ) WITHOUT ROWID""",
    # Ids the server said it stored before this log held them, so they skip the outbox on
    # arrival; pruned once the server cursor passes them.
    """CREATE TABLE server_known (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        PRIMARY KEY (room, device, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE sync_state (
        room TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (room, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE keys (
        device TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        public_key TEXT NOT NULL,
        source TEXT NOT NULL,
        learnt_at INTEGER NOT NULL
    )""",
)

# Added by schema 2: what this device saw of each message's journey (docs/network-view.md),
# for the network view's "path"; `detail` is a JSON object of the step's other fields.
_SCHEMA_2 = (
    """CREATE TABLE message_path (
        room TEXT NOT NULL,
        id TEXT NOT NULL,
        at INTEGER NOT NULL,
        what TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX message_path_by_id ON message_path (room, id)",
)

# Steps that say the server holds a message: one of them per message is enough.
SERVER_STEPS = ("uploaded", "on_server")

_ENVELOPE_COLUMNS = "room, author, device, seq, lamport, ts, text, sig"

_Row = tuple[str, str, str, int, int, int, str, str]

_LOOKUP_CHUNK = 300  # envelopes per query of `holds_each`, 3 parameters each


@dataclass(frozen=True)
class PathStep:
    """One step of a message's path as this device saw it: `what` happened at `at` (ms)."""

    id: str
    at: int
    what: str
    detail: dict[str, Any] = field(default_factory=dict)


class LocalLog:
    """The agent's SQLite log, opened (and created or migrated) at `path`.

    `clock` gives the current time in seconds, for `received_at` and key bookkeeping.
    `conflicts` counts envelopes refused because their id held different content.
    """

    def __init__(
        self, path: str | PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._path = os.fspath(path)
        self._dir_synced = False
        # `vector` per room, valid while no head changes: this connection's writes clear it,
        # and `PRAGMA data_version` tells of other connections' commits.
        self._vectors: dict[str, VersionVector] = {}
        self._data_version: int | None = None
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self.conflicts = 0
        try:
            (mode,) = self._db.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
            # NORMAL: a commit survives the process being killed, not a power loss; the
            # commits that hand out this device's seqs are made FULL (see the docstring).
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate(str(path))
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the file; the log is unusable afterwards. Closing twice is harmless."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> LocalLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- writing envelopes -------------------------------------------------------------------

    def author_message(
        self, key: DeviceKey, room: str, author: str, text: str, ts: int, *,
        durable: bool = True,
    ) -> Envelope:
        """Sign and store a new message from this device: the next seq, lamport one past the
        room's highest, queued for upload. Seq allocation and the insert are one transaction,
        so seqs have no gaps, survive restarts and are never reused.

        With `durable` False the commit survives a kill but not yet a power loss: the caller
        must `sync()` before the message is sent or acknowledged to anyone (group commit).
        Raises InvalidEnvelope for invalid fields (nothing is stored and no seq is used).
        """
        device = key.device_id
        with self._lock, self._write(durable=durable) as db:
            counted = _scalar(
                db, "SELECT next_seq FROM own_seq WHERE room = ? AND device = ?", room, device
            )
            # A seq of this device already held (e.g. fetched back from the server) is never
            # reused, even if own_seq says otherwise.
            held = _scalar(
                db, "SELECT MAX(seq) FROM messages WHERE room = ? AND device = ?", room, device
            )
            seq = max(counted or 1, (held or 0) + 1)
            lamport = next_lamport(self._max_lamport(db, room))
            env = Envelope.create(
                key, room=room, author=author, seq=seq, lamport=lamport, ts=ts, text=text
            )
            self._insert(db, env, "self")
            db.execute(
                "INSERT INTO own_seq (room, device, next_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (room, device) DO UPDATE SET next_seq = excluded.next_seq",
                (room, device, seq + 1),
            )
        return env

    def add(self, env: Envelope, origin: str) -> bool:
        """Store a verified envelope; True if it was new, False if the same one was held.

        `origin` is 'self', 'peer:<device>' or 'server'. A new envelope enters the outbox
        unless it came from the server or the server already said it holds it. Raises Conflict
        if a different envelope holds its id (the first one is kept).
        """
        _check_origin(origin)
        with self._lock, self._write() as db:
            return self._insert(db, env, origin)

    def add_many(self, envs: Iterable[Envelope], origin: str) -> list[Envelope]:
        """Store many verified envelopes in one transaction and return the new ones, in order.

        Duplicates are skipped, and so are conflicts (counted in `conflicts`), so one bad
        envelope does not stop a batch.
        """
        _check_origin(origin)
        added: list[Envelope] = []
        with self._lock, self._write() as db:
            for env in envs:
                try:
                    if self._insert(db, env, origin):
                        added.append(env)
                except Conflict:
                    continue
        return added

    def sync(self) -> None:
        """Make every commit made so far survive a power loss: an fsync of the WAL (what a
        `synchronous = FULL` commit does), without the lock, so it may run in a worker thread
        while the event loop goes on using the log. Commits that checkpointed the WAL into the
        main file synced it already. The directory is synced once, for the WAL's own entry."""
        try:
            fd = os.open(self._path + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            fd = os.open(self._path, os.O_RDONLY)  # no WAL: it was checkpointed and removed
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._dir_synced:
            directory = os.open(os.path.dirname(os.path.abspath(self._path)), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._dir_synced = True

    # --- reading envelopes -------------------------------------------------------------------

    def vector(self, room: str) -> VersionVector:
        """The room's version vector: per device, the highest seq held with none missing below.

        Kept between calls (the room core asks for it with every digest, tick and server
        notice) until this connection changes a head, or another connection commits."""
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                self._vectors.clear()
            cached = self._vectors.get(room)
            if cached is not None:
                return cached
            rows = self._db.execute(
                "SELECT device, contiguous FROM heads WHERE room = ? AND contiguous > 0",
                (room,),
            ).fetchall()
            vector = self._vectors[room] = VersionVector(dict(rows))
        return vector

    def missing_for(
        self,
        room: str,
        peer: VersionVector,
        limit: int = MAX_BATCH,
        *,
        after: tuple[str, int] | None = None,
        max_bytes: int | None = None,
    ) -> list[Envelope]:
        """The next batch of envelopes a peer with vector `peer` may lack, exactly as
        MessageLog.missing_for: seq above the peer's entry, (device, seq) order, at most
        `limit`, resuming after the (device, seq) of the last envelope sent."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        batch: list[Envelope] = []
        size = 2  # the brackets of a JSON array
        with self._lock:
            devices = [
                device
                for (device,) in self._db.execute(
                    "SELECT device FROM heads WHERE room = ? AND device >= ? ORDER BY device",
                    (room, after[0] if after is not None else ""),
                )
            ]
            for device in devices:
                floor = peer.get(device)
                if after is not None and device == after[0]:
                    floor = max(floor, after[1])
                rows = self._db.execute(
                    f"SELECT {_ENVELOPE_COLUMNS} FROM messages "
                    "WHERE room = ? AND device = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (room, device, floor, limit - len(batch)),
                )
                for row in rows:
                    env = _envelope(row)
                    if max_bytes is not None:
                        cost = len(env.to_json().encode("utf-8")) + (1 if batch else 0)
                        if batch and size + cost > max_bytes:
                            return batch
                        size += cost
                    batch.append(env)
                if len(batch) >= limit:
                    return batch
        return batch

    def gaps(self, room: str, limit: int = MAX_BATCH) -> dict[str, list[int]]:
        """Per device with a gap, the seqs missing below its highest held seq, at most `limit`
        per device, lowest first (as MessageLog.gaps). A gap triggers anti-entropy."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        result: dict[str, list[int]] = {}
        with self._lock:
            heads = self._db.execute(
                "SELECT device, contiguous FROM heads "
                "WHERE room = ? AND highest > contiguous ORDER BY device",
                (room,),
            ).fetchall()
            for device, contiguous in heads:
                expected = contiguous + 1
                missing: list[int] = []
                rows = self._db.execute(
                    "SELECT seq FROM messages WHERE room = ? AND device = ? AND seq > ? "
                    "ORDER BY seq",
                    (room, device, expected),
                )
                for (seq,) in rows:
                    missing.extend(range(expected, min(seq, expected + limit - len(missing))))
                    if len(missing) >= limit:
                        break
                    expected = seq + 1
                rows.close()
                result[device] = missing
        return result

    def page(
        self, room: str, before: tuple[int, str, int] | None = None, limit: int = 50
    ) -> list[Envelope]:
        """Up to `limit` envelopes just before the (lamport, device, seq) key `before` (the
        newest ones when None), returned oldest to newest. Pass the first envelope's
        `order_key` as `before` for the previous page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            if before is None:
                rows = self._db.execute(
                    f"SELECT {_ENVELOPE_COLUMNS} FROM messages WHERE room = ? "
                    "ORDER BY lamport DESC, device DESC, seq DESC LIMIT ?",
                    (room, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {_ENVELOPE_COLUMNS} FROM messages "
                    "WHERE room = ? AND (lamport, device, seq) < (?, ?, ?) "
                    "ORDER BY lamport DESC, device DESC, seq DESC LIMIT ?",
                    (room, *before, limit),
                ).fetchall()
        return [_envelope(row) for row in reversed(rows)]

    def get(self, room: str, envelope_id: str) -> Envelope | None:
        """The envelope held under `device:seq` in `room`, or None (also for a malformed id)."""
        parsed = _parse_id(envelope_id)
        if parsed is None:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_ENVELOPE_COLUMNS} FROM messages "
                "WHERE room = ? AND device = ? AND seq = ?",
                (room, *parsed),
            ).fetchone()
        return None if row is None else _envelope(row)

    def holds(self, env: Envelope) -> bool:
        """Tell whether this very envelope, every field and the signature equal, is held. The
        log keeps only verified envelopes, so one it holds need not be verified again."""
        with self._lock:
            return self._holds(self._db, env)

    def holds_each(self, envs: Sequence[Envelope]) -> list[bool]:
        """`holds` for each of many envelopes, in one query per few hundred: a catch-up page
        or sync batch is looked up at once, not one query per envelope."""
        found: set[_Row] = set()
        with self._lock:
            for start in range(0, len(envs), _LOOKUP_CHUNK):
                chunk = envs[start:start + _LOOKUP_CHUNK]
                # A join on VALUES, not `(room, device, seq) IN (VALUES …)`: SQLite scans the
                # whole table for the latter and searches the primary key for the former.
                found.update(self._db.execute(
                    f"SELECT {', '.join('m.' + c for c in _ENVELOPE_COLUMNS.split(', '))} "
                    f"FROM (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS v "
                    "JOIN messages m ON m.room = v.column1 AND m.device = v.column2 "
                    "AND m.seq = v.column3",
                    [value for env in chunk for value in (env.room, env.device, env.seq)],
                ).fetchall())
        return [(e.room, e.author, e.device, e.seq, e.lamport, e.ts, e.text, e.sig) in found
                for e in envs]

    def count(self, room: str) -> int:
        """How many envelopes the room holds."""
        with self._lock:
            return _scalar(self._db, "SELECT COUNT(*) FROM messages WHERE room = ?", room) or 0

    def max_lamport(self, room: str) -> int:
        """The room's highest Lamport time, 0 when it is empty."""
        with self._lock:
            return self._max_lamport(self._db, room)

    # --- the outbox and the server cursor ----------------------------------------------------

    def outbox_pending(self, room: str, limit: int = MAX_BATCH,
                       others_received_by: int | None = None) -> list[Envelope]:
        """Up to `limit` envelopes the server is not known to hold, oldest (display order) first.

        With `others_received_by` (ms since the epoch), envelopes of other devices are left out
        until they were received by then: their author, or the holder that brought them, is
        likely uploading them right now."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        received_by = others_received_by if others_received_by is not None else MAX_SAFE_INTEGER
        with self._lock:
            rows = self._db.execute(
                "SELECT m.room, m.author, m.device, m.seq, m.lamport, m.ts, m.text, m.sig "
                "FROM outbox o JOIN messages m USING (room, device, seq) WHERE o.room = ? "
                "AND (m.origin = 'self' OR m.received_at <= ?) "
                "ORDER BY m.lamport, m.device, m.seq LIMIT ?",
                (room, received_by, limit),
            ).fetchall()
        return [_envelope(row) for row in rows]

    def on_server(self, room: str, envelope_id: str) -> bool:
        """Tell whether the server is known to hold this envelope (it has a server cursor or
        came from the server)."""
        parsed = _parse_id(envelope_id)
        if parsed is None:
            return False
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM messages WHERE room = ? AND device = ? AND seq = ? "
                "AND (server_cursor IS NOT NULL OR origin = 'server')",
                (room, *parsed),
            ).fetchone()
        return row is not None

    def outbox_count(self, room: str) -> int:
        """How many envelopes of the room wait for upload."""
        with self._lock:
            return _scalar(self._db, "SELECT COUNT(*) FROM outbox WHERE room = ?", room) or 0

    def mark_uploaded(self, room: str, cursors: Mapping[str, int]) -> None:
        """Record the server's cursor for envelopes it acknowledged (id -> cursor) and take
        them out of the outbox."""
        self.mark_known_by_server(room, cursors)

    def mark_known_by_server(self, room: str, cursors: Mapping[str, int]) -> None:
        """Record that the server stored these envelopes (id -> cursor, as in its `stored`
        event): held ones leave the outbox, others will skip it when they arrive."""
        ids = [(_checked_id(envelope_id), cursor) for envelope_id, cursor in cursors.items()]
        with self._lock, self._write() as db:
            for (device, seq), cursor in ids:
                key = (room, device, seq)
                updated = db.execute(
                    "UPDATE messages SET server_cursor = ? "
                    "WHERE room = ? AND device = ? AND seq = ?",
                    (cursor, *key),
                ).rowcount
                if updated:
                    db.execute(
                        "DELETE FROM outbox WHERE room = ? AND device = ? AND seq = ?", key
                    )
                else:
                    db.execute(
                        "INSERT INTO server_known (room, device, seq, cursor) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (*key, cursor),
                    )

    def drop_from_outbox(self, room: str, ids: Iterable[str]) -> None:
        """Give up uploading these envelopes (the server refused them for good); they stay in
        the log."""
        keys = [(room, *_checked_id(envelope_id)) for envelope_id in ids]
        with self._lock, self._write() as db:
            db.executemany("DELETE FROM outbox WHERE room = ? AND device = ? AND seq = ?", keys)

    def server_cursor(self, room: str) -> int:
        """The last server cursor read for the room, 0 before any (the whole history follows)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM sync_state WHERE room = ? AND key = 'server_cursor'", (room,)
            ).fetchone()
        return int(row[0]) if row is not None else 0

    def set_server_cursor(self, room: str, cursor: int) -> None:
        """Remember the last server cursor read for the room (stored as given)."""
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise ValueError("a server cursor is a non-negative integer")
        with self._lock, self._write() as db:
            db.execute(
                "INSERT INTO sync_state (room, key, value) VALUES (?, 'server_cursor', ?) "
                "ON CONFLICT (room, key) DO UPDATE SET value = excluded.value",
                (room, str(cursor)),
            )
            # Everything up to the cursor has been read from the server by now.
            db.execute("DELETE FROM server_known WHERE room = ? AND cursor <= ?", (room, cursor))

    # --- rooms and read markers ---------------------------------------------------------------

    def rooms(self) -> list[str]:
        """Every room the log holds envelopes of (an agent from before rooms were remembered
        finds the rooms it was in here)."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT DISTINCT room FROM messages ORDER BY room").fetchall()]

    def unread(self, room: str) -> int:
        """How many envelopes from other devices arrived in the room since it was last read."""
        with self._lock:
            marker = _scalar(self._db, "SELECT value FROM sync_state WHERE room = ? "
                             "AND key = 'read_rowid'", room)
            return _scalar(self._db, "SELECT COUNT(*) FROM messages WHERE room = ? "
                           "AND origin != 'self' AND rowid > ?", room, int(marker or 0)) or 0

    def mark_read(self, room: str) -> None:
        """Everything the room holds now counts as read."""
        with self._lock, self._write() as db:
            db.execute(
                "INSERT INTO sync_state (room, key, value) SELECT ?, 'read_rowid', "
                "COALESCE(MAX(rowid), 0) FROM messages WHERE room = ? "
                "ON CONFLICT (room, key) DO UPDATE SET value = excluded.value", (room, room))

    # --- message paths -----------------------------------------------------------------------

    def add_path_steps(self, room: str, steps: Iterable[PathStep]) -> None:
        """Record steps of messages' paths in one transaction. A message keeps one server
        step: `uploaded` (this device's upload, acknowledged) replaces an `on_server` (the
        server's broadcast, which may arrive first); an `on_server` after either is skipped."""
        with self._lock, self._write() as db:
            for step in steps:
                if step.what == "uploaded":
                    db.execute(
                        "DELETE FROM message_path WHERE room = ? AND id = ? AND what = 'on_server'",
                        (room, step.id),
                    )
                elif step.what == "on_server" and db.execute(
                    "SELECT 1 FROM message_path WHERE room = ? AND id = ? AND what IN (?, ?)",
                    (room, step.id, *SERVER_STEPS),
                ).fetchone():
                    continue
                db.execute(
                    "INSERT INTO message_path (room, id, at, what, detail) VALUES (?, ?, ?, ?, ?)",
                    (room, step.id, step.at, step.what, json.dumps(step.detail)),
                )

    def path(self, room: str, envelope_id: str) -> list[PathStep]:
        """The recorded steps of one message's path, in the order they happened."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at, what, detail FROM message_path WHERE room = ? AND id = ? "
                "ORDER BY at, rowid",
                (room, envelope_id),
            ).fetchall()
        return [PathStep(envelope_id, at, what, json.loads(detail)) for at, what, detail in rows]

    # --- device keys ---------------------------------------------------------------------------

    def remember_key(self, device: str, user: str, public_key: str, source: str) -> bool:
        """Cache a device's key and user; True if the cache changed.

        The key must be the device's (InvalidEnvelope otherwise). `source` says who vouched for
        it ('self', 'server' or 'peer:<device>'): a key from the server or this device replaces
        any earlier entry, a peer's claim is kept only when nothing is known about the device.
        """
        if type(device) is not str or not DEVICE_ID.fullmatch(device):
            raise InvalidEnvelope("device id must be 32 lowercase hexadecimal digits")
        if not is_normalized_username(user):
            raise InvalidEnvelope(f"device {device}: user must be a user name in normal form")
        key_device = device_id_for(load_public_key(public_key).public_bytes_raw())
        if key_device != device:
            raise InvalidEnvelope(
                f"device {device}: the public key given belongs to device {key_device}"
            )
        now = int(self._clock() * 1000)
        with self._lock, self._write() as db:
            row = db.execute(
                "SELECT user, public_key, source FROM keys WHERE device = ?", (device,)
            ).fetchone()
            if row is not None:
                if row == (user, public_key, source) or source not in AUTHORITATIVE_SOURCES:
                    return False
            db.execute(
                "INSERT INTO keys (device, user, public_key, source, learnt_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET user = excluded.user, "
                "public_key = excluded.public_key, source = excluded.source, "
                "learnt_at = excluded.learnt_at",
                (device, user, public_key, source, now),
            )
            return True

    def key_for(self, device: str) -> tuple[str, str] | None:
        """The (user, public_key) cached for a device, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT user, public_key FROM keys WHERE device = ?", (device,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def vouched_key(self, device: str) -> tuple[str, str] | None:
        """The (user, public_key) of a device, only if the server (or this device itself)
        vouched for it; a peer's claim does not count. Rendezvous and relayed signals from a
        device unknown to the mesh are accepted only against such a key."""
        with self._lock:
            row = self._db.execute(
                "SELECT user, public_key FROM keys WHERE device = ? AND source IN "
                f"({', '.join('?' * len(AUTHORITATIVE_SOURCES))})",
                (device, *sorted(AUTHORITATIVE_SOURCES)),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def known_keys(self) -> list[KnownDevice]:
        """Every cached device key, by device id, to share with peers (`keys_frames_for`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, user, public_key FROM keys ORDER BY device"
            ).fetchall()
        return [KnownDevice(*row) for row in rows]

    # --- internals -----------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE), rolled back on any error.
        `durable`: its commit is fsync'd, so it survives a power loss too (the module
        docstring says which commits need that)."""
        if durable:
            # SQLite refuses to change the safety level inside a transaction.
            self._db.execute("PRAGMA synchronous = FULL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        finally:
            if durable:
                self._db.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self, path: str) -> None:
        with self._write() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{path} was written by a newer Gibberish (log schema {version}; "
                    f"this one knows up to {SCHEMA_VERSION})"
                )
            if version == 0:
                for statement in _SCHEMA:
                    db.execute(statement)
            if version < 2:
                for statement in _SCHEMA_2:
                    db.execute(statement)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _insert(self, db: sqlite3.Connection, env: Envelope, origin: str) -> bool:
        key = (env.room, env.device, env.seq)
        inserted = db.execute(
            "INSERT INTO messages (room, device, seq, author, lamport, ts, text, sig, "
            "received_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (*key, env.author, env.lamport, env.ts, env.text, env.sig,
             int(self._clock() * 1000), origin),
        ).rowcount
        if not inserted:
            # Compared in SQL: a duplicate (the common case: one message, several paths) costs
            # no rebuilding of the held envelope.
            if not self._holds(db, env):
                self.conflicts += 1
                raise Conflict(
                    f"envelope {env.id} differs from the one already held under that id; "
                    "the first one is kept"
                )
            if origin == "server":
                db.execute("DELETE FROM outbox WHERE room = ? AND device = ? AND seq = ?", key)
            return False
        cursor = _scalar(
            db, "SELECT cursor FROM server_known WHERE room = ? AND device = ? AND seq = ?", *key
        )
        if cursor is not None:
            db.execute(
                "UPDATE messages SET server_cursor = ? WHERE room = ? AND device = ? AND seq = ?",
                (cursor, *key),
            )
            db.execute("DELETE FROM server_known WHERE room = ? AND device = ? AND seq = ?", key)
        elif origin != "server":
            db.execute("INSERT INTO outbox (room, device, seq) VALUES (?, ?, ?)", key)
        self._advance_head(db, env)
        return True

    def _advance_head(self, db: sqlite3.Connection, env: Envelope) -> None:
        self._vectors.pop(env.room, None)
        row = db.execute(
            "SELECT contiguous, highest FROM heads WHERE room = ? AND device = ?",
            (env.room, env.device),
        ).fetchone()
        contiguous, highest = row if row is not None else (0, 0)
        if env.seq == contiguous + 1:
            # The new envelope may close a gap: the run now reaches the first held seq whose
            # successor is missing.
            run_end = _scalar(
                db,
                "SELECT m.seq FROM messages m WHERE m.room = ? AND m.device = ? AND m.seq >= ? "
                "AND NOT EXISTS (SELECT 1 FROM messages n WHERE n.room = m.room "
                "AND n.device = m.device AND n.seq = m.seq + 1) ORDER BY m.seq LIMIT 1",
                env.room,
                env.device,
                env.seq,
            )
            contiguous = run_end if run_end is not None else env.seq
        db.execute(
            "INSERT INTO heads (room, device, contiguous, highest) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (room, device) DO UPDATE SET contiguous = excluded.contiguous, "
            "highest = excluded.highest",
            (env.room, env.device, contiguous, max(highest, env.seq)),
        )

    @staticmethod
    def _holds(db: sqlite3.Connection, env: Envelope) -> bool:
        row = db.execute(
            "SELECT 1 FROM messages WHERE room = ? AND device = ? AND seq = ? "
            "AND author = ? AND lamport = ? AND ts = ? AND text = ? AND sig = ?",
            (env.room, env.device, env.seq, env.author, env.lamport, env.ts, env.text, env.sig),
        ).fetchone()
        return row is not None

    @staticmethod
    def _max_lamport(db: sqlite3.Connection, room: str) -> int:
        return _scalar(db, "SELECT MAX(lamport) FROM messages WHERE room = ?", room) or 0


def _scalar(db: sqlite3.Connection, sql: str, *params: object) -> int | None:
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _envelope(row: _Row) -> Envelope:
    # Rebuilding validates every field again, so a damaged file cannot inject a bad envelope.
    return Envelope(*row)


def _check_origin(origin: str) -> None:
    if origin in ("self", "server"):
        return
    if origin.startswith("peer:") and DEVICE_ID.fullmatch(origin[5:]):
        return
    raise ValueError(f"origin must be 'self', 'server' or 'peer:<device id>', not {origin!r}")


def _parse_id(envelope_id: str) -> tuple[str, int] | None:
    device, _, seq = envelope_id.partition(":")
    if not (DEVICE_ID.fullmatch(device) and seq.isascii() and seq.isdigit() and len(seq) <= 16):
        return None
    return device, int(seq)


def _checked_id(envelope_id: str) -> tuple[str, int]:
    parsed = _parse_id(envelope_id)
    if parsed is None:
        raise ValueError(f"{envelope_id!r} is not an envelope id (device:seq)")
    return parsed
