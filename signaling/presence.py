"""Presence that outlives a connection: heartbeats of the server processes, and pruning.

Presence rows live in the database, so that every server process sharing it shows the same
roster; each row names the process holding its connection (`server_id`). A row must go when its
connection goes. The disconnect handler deletes it in the ordinary case; `PresenceKeeper` catches
the rest, once per heartbeat:

- a process that dies without a goodbye (kill -9, a lost machine) stops refreshing its heartbeat;
  after `STALE_BEATS` missed beats any other process deletes its rows and tells the rooms
  `peer_left`, so a crashed process's clients leave every roster within 3 to 4 heartbeats
  (a process judges the others only once it has beaten for a whole stale window itself, so
  that after a database outage, when every heartbeat is stale, nobody is taken for dead);
- a row of this process whose connection is gone (the disconnect handler could not reach the
  database) is deleted once two beats in a row found it so;
- a process that finds it was presumed dead (cut off from the database for longer than the stale
  window while its clients stayed connected) disconnects its clients: they reconnect and join
  again, which writes their rows back.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import Select, delete, inspect, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db, rollback_quietly, socketio
from .models import Presence, Room, ServerProcess, User

log = logging.getLogger("gibberish.presence")

# A process is presumed dead once this many heartbeats in a row are missing.
STALE_BEATS = 3
NAMESPACE = "/"


def channel(room: str) -> str:
    """The Socket.IO room that carries a chat room's notices."""
    return f"room:{room}"


def clear_presence(app: Flask) -> int:
    """Forget presence left by a previous run. A single process (no Redis queue) owns every
    connection, so at start nobody is connected; with several processes sharing Redis only
    this process's own entries could be stale, and a fresh process has none."""
    if app.config.get("REDIS_URL") or not inspect(db.engine).has_table("presence"):
        return 0
    result = db.session.execute(delete(Presence))
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def database_now_ms() -> int:
    """Milliseconds since the epoch by the database's clock on PostgreSQL (one clock for every
    process, whatever machine it runs on), by this machine's clock on SQLite (one machine)."""
    if db.session.get_bind().dialect.name == "postgresql":
        value = db.session.scalar(
            text("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"))
        return int(value)
    return int(time.time() * 1000)


def presence_epoch(joined_at: datetime) -> int:
    """The presence epoch of a roster entry: when it joined, in microseconds since 1970 (UTC).

    A device's next join is later, so peers order its joins and leaves by it
    (protocol/roster.py); row ids will not do, as SQLite reuses the id of a deleted last row."""
    aware = joined_at if joined_at.tzinfo is not None else joined_at.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Departure:
    """A device removed from a room's roster by the keeper, to announce as `peer_left`."""

    room: str
    device: str
    user: str
    epoch: int | None = None  # presence_epoch of the row


class PresenceKeeper:
    """Refreshes this process's heartbeat every `PRESENCE_HEARTBEAT_SECONDS` and prunes
    presence rows whose connection is gone (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server_id: str = app.config["SERVER_ID"]
        self.interval = float(app.config["PRESENCE_HEARTBEAT_SECONDS"])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered = False
        self._failing = False
        self._orphans_seen: set[int] = set()
        # Since when this process's heartbeat has been written without a break (monotonic).
        self._beating_since: float | None = None

    def start(self) -> None:
        """Beat once now, so the process is known before it serves, then in a daemon thread;
        at exit, take this process's rows out of the rosters."""
        self.beat_safely()
        self._thread = threading.Thread(target=self._run, name="presence-keeper", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop beating and retire: this process's rows are deleted and announced."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 5)
        with self.app.app_context():
            try:
                self._announce(self._delete_rows(
                    select(Presence.id).where(Presence.server_id == self.server_id)))
                db.session.execute(delete(ServerProcess).where(
                    ServerProcess.id == self.server_id))
                db.session.commit()
            except SQLAlchemyError as exc:
                rollback_quietly()
                log.warning("could not retire server process %s: %s", self.server_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat_safely()
            except Exception:  # never let the heartbeat thread die
                log.exception("presence heartbeat crashed; beating on")

    def beat_safely(self) -> list[Departure]:
        """One beat; a failure (the database is down) is logged once and retried next beat."""
        with self.app.app_context():
            try:
                gone = self.beat()
            except Exception as exc:
                rollback_quietly()
                self._beating_since = None
                if not self._failing:
                    log.warning("presence heartbeat failed, retrying every %.1f s: %s",
                                self.interval, exc)
                self._failing = True
                return []
        if self._failing:
            log.info("presence heartbeat recovered")
            self._failing = False
        return gone

    def beat(self) -> list[Departure]:
        """Refresh the heartbeat, prune what is gone and announce it; returns what left."""
        now = database_now_ms()
        refreshed = db.session.execute(
            update(ServerProcess).where(ServerProcess.id == self.server_id)
            .values(heartbeat_ms=now))
        if int(getattr(refreshed, "rowcount", 0) or 0) == 0:
            if self._registered:
                self._rejoin_everyone()
            db.session.add(ServerProcess(id=self.server_id, heartbeat_ms=now))
        db.session.commit()
        self._registered = True
        if self._beating_since is None:
            self._beating_since = time.monotonic()
        gone = self._prune(now - int(STALE_BEATS * self.interval * 1000))
        self._announce(gone)
        return gone

    def _prune(self, cutoff_ms: int) -> list[Departure]:
        # Judge other processes only after beating for a whole stale window ourselves: when
        # the database comes back after an outage every heartbeat is stale, and the first
        # process to reach it must not take the others, alive all along, for dead.
        judge = (self._beating_since is not None and
                 time.monotonic() - self._beating_since >= STALE_BEATS * self.interval)
        live = select(ServerProcess.id).where(ServerProcess.heartbeat_ms >= cutoff_ms)
        # Read the rows before asking which connections are open: a row written after this
        # read is not considered, so a connection that joins meanwhile is never pruned.
        rows = db.session.execute(
            select(Presence.id, Presence.sid, Presence.server_id).where(or_(
                Presence.server_id == self.server_id, Presence.server_id.not_in(live)))
        ).all()
        dead = {r.id for r in rows if r.server_id != self.server_id} if judge else set()
        orphans = {r.id for r in rows if r.server_id == self.server_id
                   and not socketio.server.manager.is_connected(r.sid, NAMESPACE)}
        # Our own rows get one beat of grace: the disconnect handler may be deleting them.
        doomed = dead | (orphans & self._orphans_seen)
        self._orphans_seen = orphans - doomed
        gone = self._delete_rows(select(Presence.id).where(Presence.id.in_(doomed))) \
            if doomed else []
        if judge:
            db.session.execute(delete(ServerProcess).where(
                ServerProcess.heartbeat_ms < cutoff_ms, ServerProcess.id != self.server_id))
        db.session.commit()
        return gone

    def _delete_rows(self, ids: Select[tuple[int]]) -> list[Departure]:
        """Delete the presence rows whose ids `ids` selects and return them; of several
        processes pruning the same rows at once, only the one whose delete took a row
        announces it."""
        rows = db.session.execute(
            select(Presence.id, Room.name, Presence.device_id, User.username,
                   Presence.joined_at)
            .join(Room, Room.id == Presence.room_id).join(User, User.id == Presence.user_id)
            .where(Presence.id.in_(ids))
        ).all()
        if not rows:
            return []
        taken = set(db.session.scalars(
            delete(Presence).where(Presence.id.in_([r.id for r in rows]))
            .returning(Presence.id)).all())
        db.session.commit()
        return [Departure(r.name, r.device_id, r.username,
                          presence_epoch(r.joined_at)) for r in rows if r.id in taken]

    def _announce(self, gone: list[Departure]) -> None:
        for d in gone:
            log.info("presence of %s (%s) in %s pruned: its connection is gone",
                     d.device, d.user, d.room)
            socketio.emit("peer_left", {"room": d.room, "device": d.device, "user": d.user,
                                        "epoch": d.epoch}, to=channel(d.room),
                          namespace=NAMESPACE)

    def _rejoin_everyone(self) -> None:
        """Our rows were pruned while we lived: disconnect our clients so they rejoin."""
        sids = list(socketio.server.manager.rooms.get(NAMESPACE, {}).get(None, {}))
        log.warning("this process (%s) was presumed dead and its presence removed; "
                    "disconnecting its %d clients so that they join again",
                    self.server_id, len(sids))
        for sid in sids:
            socketio.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)


def start_presence(app: Flask) -> PresenceKeeper:
    """Clear presence left by a previous single-process run and start the heartbeat; both
    survive a database that is down at start (the keeper retries every beat)."""
    with app.app_context():
        try:
            clear_presence(app)
        except SQLAlchemyError as exc:
            rollback_quietly()
            log.warning("could not clear old presence at start: %s", exc)
    keeper = PresenceKeeper(app)
    keeper.start()
    app.extensions["gibberish_presence"] = keeper
    return keeper
