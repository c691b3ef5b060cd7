"""The room log in the database: idempotent inserts of verified envelopes and keyset pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app, g
from sqlalchemy import Connection, Select, func, insert, literal, or_, select, text, tuple_
from sqlalchemy.exc import IntegrityError

from protocol import Conflict, Envelope

from .extensions import db
from .models import Device, Membership, Message, Room, User


@dataclass(frozen=True)
class Stored:
    """The outcome of one upload: the message id, its server cursor, and whether it was new."""

    id: str
    cursor: int
    duplicate: bool


@dataclass(frozen=True)
class DeviceOwner:
    """Who a registered device key belongs to."""

    username: str
    public_key: str


@dataclass(frozen=True)
class RoomFacts:
    """What never changes about a room once it exists: rooms are never renamed, deleted or
    turned into another kind (signaling/rooms.py)."""

    id: int
    name: str
    kind: str


# Facts remembered for the process's life (dropped all at once past this many).
_FACTS_MAX = 50_000


def _facts() -> dict[tuple[str, str], Any]:
    """Facts that cannot change once true (a room's id and kind, a device's owner and key:
    nothing deletes or renames rooms, users or devices), remembered by this app for as long
    as the process runs, so an upload in a live room does not look them up again. Every
    process of a scaled-out server keeps its own; none can go stale. Not memberships: those
    are deleted."""
    facts: dict[tuple[str, str], Any] | None = current_app.extensions.get("gibberish_facts")
    if facts is None or len(facts) > _FACTS_MAX:
        facts = current_app.extensions["gibberish_facts"] = {}
    return facts


def _remembered(kind: str, key: str, statement: Select[Any], make: Callable[..., Any]) -> Any:
    """`make(*row)` of the first row of `statement`, remembered as the fact (kind, key) once
    found (a miss is not remembered: it may exist soon); None if there is no row."""
    facts = _facts()
    found = facts.get((kind, key))
    if found is None:
        row = db.session.execute(statement).first()
        if row is not None:
            found = facts[kind, key] = make(*row)
    return found


def room_facts(name: str) -> RoomFacts | None:
    """The id, name and kind of the room called `name`, or None if there is none."""
    found: RoomFacts | None = _remembered(
        "room", name, select(Room.id, Room.name, Room.kind).where(Room.name == name), RoomFacts)
    return found


def _request_cache() -> dict[tuple[Any, ...], Any]:
    """Lookups that every envelope of an upload batch repeats and that may change between
    requests (the uploader's membership, an author's in a private room; a room's row as the
    ORM loads it), remembered for the current request only. SQLAlchemy's identity map holds
    objects weakly, so without this each envelope would query again. What cannot change is
    remembered for longer (`_facts`)."""
    cache: dict[tuple[Any, ...], Any] | None = g.get("gibberish_store_cache")
    if cache is None:
        cache = g.gibberish_store_cache = {}
    return cache


def get_room(name: str) -> Room | None:
    cache = _request_cache()
    room: Room | None = cache.get(("room", name))
    if room is None:
        room = db.session.scalar(select(Room).where(Room.name == name))
        if room is not None:
            cache["room", name] = room
    return room


def device_owner(device_id: str) -> DeviceOwner | None:
    """The user name and public key of a registered device, or None."""
    owner: DeviceOwner | None = _remembered(
        "device", device_id,
        select(User.username, Device.public_key).join(User, Device.user_id == User.id)
        .where(Device.id == device_id), DeviceOwner)
    return owner


def get_or_create_room(name: str) -> Room:
    room = get_room(name)
    if room is not None:
        return room
    try:
        with db.session.begin_nested():
            room = Room(name=name)
            db.session.add(room)
    except IntegrityError:
        # Another request created it between our read and our insert.
        room = get_room(name)
        assert room is not None
    return room


def ensure_membership(room: Room, user: User) -> None:
    if db.session.get(Membership, (room.id, user.id)) is None:
        try:
            with db.session.begin_nested():
                db.session.add(Membership(room_id=room.id, user_id=user.id))
        except IntegrityError:
            pass


class Identified(Protocol):
    """A user as far as membership goes: a User row, or a connection's signed-in user."""

    @property
    def id(self) -> int: ...


def is_member(room: Room | RoomFacts, user: Identified) -> bool:
    cache = _request_cache()
    key = ("member", room.id, user.id)
    if key not in cache and db.session.scalar(select(Membership.user_id).where(
            Membership.room_id == room.id, Membership.user_id == user.id)) is not None:
        cache[key] = True
    return key in cache


def forget_membership(room: Room, user: User) -> None:
    """Drop a membership remembered for this request, once it has been deleted."""
    _request_cache().pop(("member", room.id, user.id), None)


def is_member_named(room: Room | RoomFacts, username: str) -> bool:
    """Tell whether the user called `username` is a member of `room`."""
    cache = _request_cache()
    key = ("member-named", room.id, username)
    if key not in cache:
        cache[key] = db.session.scalar(
            select(Membership.user_id).join(User, User.id == Membership.user_id)
            .where(Membership.room_id == room.id, User.username == username)) is not None
    return bool(cache[key])


_COLUMNS = ("room_id", "device_id", "seq", "author", "lamport", "ts", "text", "sig")

# PostgreSQL: one short statement whatever the batch size, one array per column. psycopg
# parses and prepares it once; the multi-row VALUES of a 100-row batch has 800 parameters and
# is parsed afresh each time (measured: three times the CPU and the wall time per batch).
_UNNEST_INSERT = text("""
INSERT INTO messages (room_id, device_id, seq, author, lamport, ts, text, sig, stored_at)
SELECT room_id, device_id, seq, author, lamport, ts, text, sig, now()
FROM unnest(CAST(:room_id AS integer[]), CAST(:device_id AS varchar[]),
            CAST(:seq AS bigint[]), CAST(:author AS varchar[]), CAST(:lamport AS bigint[]),
            CAST(:ts AS bigint[]), CAST(:text AS text[]), CAST(:sig AS varchar[]))
     AS batch(room_id, device_id, seq, author, lamport, ts, text, sig)
ON CONFLICT (room_id, device_id, seq) DO NOTHING
RETURNING device_id, seq, cursor
""")

# SQLite: the same as multi-row INSERTs that SQLAlchemy builds from a list of rows
# ("insertmanyvalues"), with RETURNING. Written INSERT OR IGNORE rather than with the dialect's
# ON CONFLICT DO NOTHING: SQLAlchemy caches no statement of the dialect's own insert construct
# and compiled it again for every upload (263 against 74 µs for an insert of 3 rows). Only the
# id's uniqueness can refuse a row here: every other column is given and checked.
_SQLITE_INSERT = (
    insert(Message.__table__)
    .prefix_with("OR IGNORE", dialect="sqlite")
    .returning(Message.device_id, Message.seq, Message.cursor)
)


def _insert(connection: Connection, values: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """Insert the rows that are new, skip those whose id is taken (so a retried upload never
    raises and never doubles a row), and return the cursor of each row inserted."""
    if connection.dialect.name == "postgresql":
        result = connection.execute(
            _UNNEST_INSERT, {name: [v[name] for v in values] for name in _COLUMNS})
    else:
        result = connection.execute(_SQLITE_INSERT, values)
    return {(r.device_id, r.seq): r.cursor for r in result}


def store_envelopes(room: Room | RoomFacts,
                    envelopes: Sequence[Envelope]) -> list[Stored | Conflict]:
    """Store verified envelopes of one room idempotently, in one transaction.

    A message already stored with the same content is acknowledged with its original cursor;
    a different envelope under an existing id (a device reusing a seq) is refused as Conflict."""
    if not envelopes:
        return []
    room_id = room.id
    values = [
        {
            "room_id": room_id, "device_id": e.device, "seq": e.seq, "author": e.author,
            "lamport": e.lamport, "ts": e.ts, "text": e.text, "sig": e.sig,
        }
        for e in envelopes
    ]
    connection = db.session.connection()
    fresh = _insert(connection, values)
    # Rows that were there already (a retry, or an id reused with other content) are read
    # back to compare; in the common case every row is new and this costs nothing.
    old = [(e.device, e.seq) for e in envelopes if (e.device, e.seq) not in fresh]
    rows = connection.execute(
        select(Message.device_id, Message.seq, Message.cursor, Message.author,
               Message.lamport, Message.ts, Message.text, Message.sig)
        .where(Message.room_id == room_id, tuple_(Message.device_id, Message.seq).in_(old))
    ).all() if old else []
    db.session.commit()
    existing = {(r.device_id, r.seq): r for r in rows}
    conflict = "message {} already exists with different content"
    outcome: list[Stored | Conflict] = []
    first: dict[tuple[str, int], Envelope] = {}  # the first envelope of each id in the batch
    for env in envelopes:
        key = (env.device, env.seq)
        earlier = first.setdefault(key, env)
        if key in fresh:
            # Stored by this batch: a repeat of the id within the batch is a duplicate of
            # the first, and a conflict if its content differs.
            if earlier is not env and earlier != env:
                outcome.append(Conflict(conflict.format(env.id)))
            else:
                outcome.append(Stored(env.id, fresh[key], earlier is not env))
            continue
        row = existing[key]
        if (row.author, row.lamport, row.ts, row.text, row.sig) != (
                env.author, env.lamport, env.ts, env.text, env.sig):
            outcome.append(Conflict(conflict.format(env.id)))
        else:
            outcome.append(Stored(env.id, row.cursor, True))
    return outcome


def latest_cursor(room_id: int) -> int:
    """The cursor of the room's newest stored message (0: none)."""
    value = db.session.scalar(select(func.max(Message.cursor)).where(Message.room_id == room_id))
    return int(value or 0)


def message_dict(row: Message, room_name: str) -> dict[str, Any]:
    """The wire form of a stored message: the envelope plus the server cursor."""
    return {
        "room": room_name, "author": row.author, "device": row.device_id, "seq": row.seq,
        "lamport": row.lamport, "ts": row.ts, "text": row.text, "sig": row.sig,
        "id": f"{row.device_id}:{row.seq}", "cursor": row.cursor,
    }


def page_after_cursor(room: Room, after: int, limit: int) -> list[Message]:
    """Messages stored after `after`, in insertion order: the catch-up feed for agents, which
    never misses a message stored late with a low Lamport time."""
    stmt = (
        select(Message)
        .where(Message.room_id == room.id, Message.cursor > after)
        .order_by(Message.cursor)
        .limit(limit)
    )
    return list(db.session.scalars(stmt).all())


OrderKey = tuple[int, str, int]


def _search(stmt: Select[tuple[Message]], query: str) -> Select[tuple[Message]]:
    if not query:
        return stmt
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return stmt.where(or_(Message.text.ilike(pattern, escape="\\"),
                          Message.author.ilike(pattern, escape="\\")))


def page_in_display_order(
    room: Room, *, before: OrderKey | None = None, after: OrderKey | None = None,
    limit: int = 50, query: str = "",
) -> tuple[list[Message], bool]:
    """One page of the log in display order (lamport, device, seq), by keyset: the newest page
    by default, older than `before` or newer than `after`. Returns the rows oldest first and
    whether more rows lie beyond the page in the direction of travel."""
    order = (Message.lamport, Message.device_id, Message.seq)
    stmt = _search(select(Message).where(Message.room_id == room.id), query)
    if after is not None:
        stmt = stmt.where(tuple_(*order) > tuple_(*map(literal, after))).order_by(*order)
    else:
        if before is not None:
            stmt = stmt.where(tuple_(*order) < tuple_(*map(literal, before)))
        stmt = stmt.order_by(*(c.desc() for c in order))
    rows = list(db.session.scalars(stmt.limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    if after is None:
        rows.reverse()
    return rows, more

