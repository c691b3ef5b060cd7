"""The local log's file (log.py): the SQLite connection in WAL mode, its lock, write
transactions, the fsync that makes commits survive a power loss, and the migration on open;
with the small helpers the log's parts share (underscored: private to the log's modules).

The log's parts (`log_envelopes.py`, `log_server.py`, `log_marks.py`, `log_keys.py`) are
classes over this one connection, and `LocalLog` (log.py) is all of them."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from types import TracebackType
from typing import Self

from protocol import Envelope, VersionVector
from protocol.envelope import DEVICE_ID

from .log_schema import _SCHEMA, _SCHEMA_2, _SCHEMA_3, SCHEMA_VERSION

_ENVELOPE_COLUMNS = "room, author, device, seq, lamport, ts, text, sig"
# What SQLite's own FULL commits call to sync a file (fsync where fdatasync is missing).
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

_Row = tuple[str, str, str, int, int, int, str, str]


class LogFile:
    """The SQLite file of the log, opened (and created or migrated) at `path`.

    `clock` gives the current time in seconds, for `received_at` and key bookkeeping.
    `conflicts` counts envelopes refused because their id held different content.
    """

    def __init__(
        self, path: str | PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        # Reentrant: `batch` holds it across the writes it gathers, each taking it again.
        self._lock = threading.RLock()
        self._batching = False  # inside `batch`: writes are savepoints of its transaction
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
            # commits that hand out this device's seqs are made FULL (log.py's docstring).
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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def sync(self) -> None:
        """Make every commit made so far survive a power loss: an fdatasync of the WAL (what a
        `synchronous = FULL` commit does: SQLite syncs its files with fdatasync where there is
        one, which flushes the data and the size but not the times), without the lock, so it
        may run in a worker thread while the event loop goes on using the log. Commits that
        checkpointed the WAL into the main file synced it already. The directory is synced
        once, for the WAL's own entry."""
        try:
            fd = os.open(self._path + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            fd = os.open(self._path, os.O_RDONLY)  # no WAL: it was checkpointed and removed
        try:
            _datasync(fd)
        finally:
            os.close(fd)
        if not self._dir_synced:
            directory = os.open(os.path.dirname(os.path.abspath(self._path)), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._dir_synced = True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the writes inside one transaction, committed at the end (each write a
        savepoint of it, so one that fails undoes only itself): one commit for what a busy
        loop turn received, not one per message. The log is this thread's meanwhile. Nothing
        written inside may be acknowledged or shown before the block ends; a block inside
        another joins it."""
        with self._lock:
            if self._batching:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._batching = True
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._vectors.clear()  # they may have counted what was undone
                raise
            finally:
                self._batching = False

    # --- internals -----------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE), rolled back on any error.
        `durable`: its commit is fsync'd, so it survives a power loss too (the module
        docstring says which commits need that). Inside `batch`, a savepoint of its
        transaction instead (never durable: the batch commits)."""
        if self._batching:
            if durable:
                raise RuntimeError("a durable write cannot join a batch")
            self._db.execute("SAVEPOINT write")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK TO write")
                self._vectors.clear()
                raise
            finally:
                self._db.execute("RELEASE write")
            return
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
            if version < 3:
                for statement in _SCHEMA_3:
                    db.execute(statement)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _scalar(db: sqlite3.Connection, sql: str, *params: object) -> int | None:
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _set_server_cursor(db: sqlite3.Connection, key: tuple[str, str, int], cursor: int) -> bool:
    """The server holds the envelope `key` (room, device, seq) at `cursor`: the held one gets
    the cursor and leaves the outbox (no upload of it is due). False if none is held."""
    updated = db.execute(
        "UPDATE messages SET server_cursor = ? WHERE room = ? AND device = ? AND seq = ?",
        (cursor, *key),
    ).rowcount
    if updated:
        db.execute("DELETE FROM outbox WHERE room = ? AND device = ? AND seq = ?", key)
    return bool(updated)


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
