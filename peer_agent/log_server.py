"""What the local log (log.py) keeps of the server: the outbox of envelopes it is not known
to hold, the ids it said it stored, and the last cursor of its history read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from protocol import MAX_BATCH, Envelope
from protocol.limits import MAX_SAFE_INTEGER

from .log_file import (
    LogFile,
    _checked_id,
    _envelope,
    _parse_id,
    _scalar,
    _set_server_cursor,
)

# The outbox in its own display order (index outbox_order), each row's message looked up: a
# batch costs its rows, not the room (CROSS JOIN keeps SQLite to that order).
OUTBOX_QUERY = (
    "SELECT m.room, m.author, m.device, m.seq, m.lamport, m.ts, m.text, m.sig "
    "FROM outbox o CROSS JOIN messages m ON m.room = o.room AND m.device = o.device "
    "AND m.seq = o.seq WHERE o.room = ? AND (m.origin = 'self' OR m.received_at <= ?) "
    "ORDER BY o.lamport, o.device, o.seq LIMIT ?"
)


class ServerBookkeeping(LogFile):
    """The outbox and the server cursor of every room."""

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
            rows = self._db.execute(OUTBOX_QUERY, (room, received_by, limit)).fetchall()
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
                if not _set_server_cursor(db, key, cursor):
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
