"""The room log in the database: idempotent inserts of verified envelopes and keyset pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from protocol import Conflict, Envelope

from .extensions import db
from .models import Membership, Message, Room, User


@dataclass(frozen=True)
class Stored:
    """The outcome of one upload: the message id, its server cursor, and whether it was new."""

    id: str
    cursor: int
    duplicate: bool


def get_room(name: str) -> Room | None:
    return db.session.scalar(select(Room).where(Room.name == name))


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


def is_member(room: Room, user: User) -> bool:
    return db.session.get(Membership, (room.id, user.id)) is not None


def _insert(values: list[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the dialect in use (SQLite and PostgreSQL both have
    it), so a retried upload never raises and never doubles a row."""
    dialect = db.session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(Message)
        .values(values)
        .on_conflict_do_nothing(index_elements=["room_id", "device_id", "seq"])
    )


def _same(row: Message, env: Envelope) -> bool:
    return (row.author, row.lamport, row.ts, row.text, row.sig) == (
        env.author, env.lamport, env.ts, env.text, env.sig)


def store_envelopes(room: Room, envelopes: Sequence[Envelope]) -> list[Stored | Conflict]:
    """Store verified envelopes of one room idempotently, in one transaction.

    A message already stored with the same content is acknowledged with its original cursor;
    a different envelope under an existing id (a device reusing a seq) is refused as Conflict."""
    if not envelopes:
        return []
    values = [
        {
            "room_id": room.id, "device_id": e.device, "seq": e.seq, "author": e.author,
            "lamport": e.lamport, "ts": e.ts, "text": e.text, "sig": e.sig,
        }
        for e in envelopes
    ]
    inserted: set[tuple[str, int]] = set()
    for start in range(0, len(values), 100):
        chunk = values[start:start + 100]
        result = db.session.execute(_insert(chunk).returning(Message.device_id, Message.seq))
        inserted.update((d, s) for d, s in result.all())
    keys = [(e.device, e.seq) for e in envelopes]
    rows = db.session.scalars(
        select(Message).where(
            Message.room_id == room.id,
            tuple_(Message.device_id, Message.seq).in_(keys),
        )
    ).all()
    db.session.commit()
    by_key = {(r.device_id, r.seq): r for r in rows}
    outcome: list[Stored | Conflict] = []
    seen: set[tuple[str, int]] = set()
    for env in envelopes:
        key = (env.device, env.seq)
        row = by_key[key]
        if not _same(row, env):
            outcome.append(Conflict(f"message {env.id} already exists with different content"))
            continue
        outcome.append(Stored(env.id, row.cursor, key not in inserted or key in seen))
        seen.add(key)
    return outcome


def latest_cursor(room: Room) -> int:
    value = db.session.scalar(select(func.max(Message.cursor)).where(Message.room_id == room.id))
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

