"""The envelopes of the local log (log.py): storing them (this device's own posts with their
seqs, and verified ones from peers and the server), the version vector and gaps, what a peer
lacks, pages in display order; every insert keeps the heads (the vector's entries) and the
outbox in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from protocol import MAX_BATCH, Conflict, DeviceKey, Envelope, VersionVector, next_lamport

from .log_file import (
    _ENVELOPE_COLUMNS,
    LogFile,
    _check_origin,
    _envelope,
    _parse_id,
    _scalar,
    _set_server_cursor,
)

_LOOKUP_CHUNK = 300  # envelopes per query of `holds_each`, 3 parameters each


class EnvelopeStore(LogFile):
    """Every room's envelopes, with their heads."""

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

    def add_many(self, envs: Iterable[Envelope], origin: str,
                 cursors: Mapping[str, int] | None = None) -> list[Envelope]:
        """Store many verified envelopes in one transaction and return the new ones, in order.

        Duplicates are skipped, and so are conflicts (counted in `conflicts`), so one bad
        envelope does not stop a batch. `cursors` (id -> server cursor, for envelopes read
        from the server's history) are stored with them: a new one goes in with its cursor,
        a held one (or one whose id holds another envelope) gets it and leaves the outbox, as
        `mark_known_by_server` does, in the same statements' transaction.
        """
        _check_origin(origin)
        added: list[Envelope] = []
        with self._lock, self._write() as db:
            for env in envs:
                cursor = None if cursors is None else cursors.get(env.id)
                try:
                    if self._insert(db, env, origin, advance=False, cursor=cursor):
                        added.append(env)
                except Conflict:
                    if cursor is not None:
                        _set_server_cursor(db, (env.room, env.device, env.seq), cursor)
                    continue
            self._advance_heads(db, added)
        return added

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
        found: set[tuple[object, ...]] = set()
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

    def _insert(self, db: sqlite3.Connection, env: Envelope, origin: str, *,
                advance: bool = True, cursor: int | None = None) -> bool:
        """Insert one envelope (see `add`); its device's head is moved too unless `advance`
        is False, for a batch whose heads `_advance_heads` moves at the end. `cursor`: the
        server's, known already (see `add_many`)."""
        key = (env.room, env.device, env.seq)
        inserted = db.execute(
            "INSERT INTO messages (room, device, seq, author, lamport, ts, text, sig, "
            "received_at, origin, server_cursor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (*key, env.author, env.lamport, env.ts, env.text, env.sig,
             int(self._clock() * 1000), origin, cursor),
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
            if cursor is not None:
                _set_server_cursor(db, key, cursor)
            elif origin == "server":
                db.execute("DELETE FROM outbox WHERE room = ? AND device = ? AND seq = ?", key)
            return False
        # Inserted with its cursor, it needs no more (a server_known row of it goes when the
        # server cursor passes it); else the server may have named it already.
        if cursor is None:
            known = _scalar(
                db, "SELECT cursor FROM server_known WHERE room = ? AND device = ? AND seq = ?",
                *key,
            )
            if known is not None:
                db.execute(
                    "UPDATE messages SET server_cursor = ? "
                    "WHERE room = ? AND device = ? AND seq = ?",
                    (known, *key),
                )
                db.execute("DELETE FROM server_known WHERE room = ? AND device = ? AND seq = ?",
                           key)
            elif origin != "server":
                db.execute("INSERT INTO outbox (room, device, seq, lamport) VALUES (?, ?, ?, ?)",
                           (*key, env.lamport))
        if advance:
            self._advance_heads(db, [env])
        return True

    def _advance_heads(self, db: sqlite3.Connection, added: Sequence[Envelope]) -> None:
        """Move the heads of the devices whose envelopes were just inserted: per device, one
        read of its head, one search for the end of its run when the batch holds the seq
        after it, one write (not three statements per envelope: a catch-up page of 500 from
        one device cost 1,500)."""
        by_device: dict[tuple[str, str], list[int]] = {}
        for env in added:
            by_device.setdefault((env.room, env.device), []).append(env.seq)
        for (room, device), seqs in by_device.items():
            self._vectors.pop(room, None)
            row = db.execute(
                "SELECT contiguous, highest FROM heads WHERE room = ? AND device = ?",
                (room, device),
            ).fetchone()
            contiguous, highest = row if row is not None else (0, 0)
            if contiguous + 1 in seqs:
                # The batch continues the run, and may close a gap: the run now reaches the
                # first held seq whose successor is missing.
                run_end = _scalar(
                    db,
                    "SELECT m.seq FROM messages m WHERE m.room = ? AND m.device = ? "
                    "AND m.seq >= ? AND NOT EXISTS (SELECT 1 FROM messages n "
                    "WHERE n.room = m.room AND n.device = m.device AND n.seq = m.seq + 1) "
                    "ORDER BY m.seq LIMIT 1",
                    room, device, contiguous + 1,
                )
                contiguous = run_end if run_end is not None else contiguous + 1
            db.execute(
                "INSERT INTO heads (room, device, contiguous, highest) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (room, device) DO UPDATE SET contiguous = excluded.contiguous, "
                "highest = excluded.highest",
                (room, device, contiguous, max(highest, *seqs)),
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

