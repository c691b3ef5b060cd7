"""SQLAlchemy 2.0 models: users, their device keys, rooms, memberships, presence and the log."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

# BigInteger on PostgreSQL, INTEGER on SQLite so that the primary key stays the rowid alias.
CursorType = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Bumped to revoke every bearer token issued before (sign out everywhere).
    token_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    devices: Mapped[list[Device]] = relationship(back_populates="user")


class PageSession(db.Model):  # type: ignore[name-defined,misc]
    """A signed-in page session. The session cookie names its random id, and the session is
    valid only while its row exists: signing out deletes the row, so a copy of the cookie
    taken before opens nothing afterwards."""

    __tablename__ = "page_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Device(db.Model):  # type: ignore[name-defined,misc]
    """A device's Ed25519 public key; `id` is derived from the key (protocol.device_id_for)."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship(back_populates="devices")


class Room(db.Model):  # type: ignore[name-defined,misc]
    """A chat room. `kind` is fixed at creation (signaling/rooms.py): "public" (anyone signed
    in may join and read), "private" (only its members; `owner_id` manages the list) or
    "direct" (a private room of exactly two users, with no owner)."""

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="public", server_default="public")
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(db.Model):  # type: ignore[name-defined,misc]
    """In a public room, a user who has joined it at least once; in a private or direct room,
    a user on its member list, the only users the server lets join, signal, upload or read."""

    __tablename__ = "memberships"
    # The room list of a user (GET /api/rooms, the index page) looks memberships up by user.
    __table_args__ = (Index("ix_memberships_user_id", "user_id"),)

    room_id: Mapped[int] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Presence(db.Model):  # type: ignore[name-defined,misc]
    """A device currently connected to a room through one Socket.IO connection.

    Kept in the database rather than in process memory so that several server processes
    (sharing a Redis message queue) see the same roster; `server_id` names the process that
    holds the connection."""

    __tablename__ = "presence"
    __table_args__ = (UniqueConstraint("room_id", "device_id", name="uq_presence_room_device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(64), index=True)
    server_id: Mapped[str] = mapped_column(String(64), index=True)
    rendezvous: Mapped[str | None] = mapped_column(String(128), nullable=True)
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    # Loaded with the row: every roster lists each entry's user name and public key, and
    # lazy loading would cost two queries per entry.
    user: Mapped[User] = relationship(lazy="joined")
    device: Mapped[Device] = relationship(lazy="joined")


class ServerProcess(db.Model):  # type: ignore[name-defined,misc]
    """A server process sharing the database, alive while its heartbeat is fresh.

    Each process refreshes `heartbeat_ms` every few seconds (signaling/presence.py); a process
    that stops refreshing it has died, and the others remove its presence entries. The time is
    the database's clock on PostgreSQL, so processes on several machines agree on it."""

    __tablename__ = "server_processes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Message(db.Model):  # type: ignore[name-defined,misc]
    """One signed envelope of a room's log. `cursor` is the server's insertion order; the
    display order is (lamport, device, seq); (room, device, seq) is the message id."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("room_id", "device_id", "seq", name="uq_messages_room_id"),
        Index("ix_messages_room_cursor", "room_id", "cursor"),
        Index("ix_messages_room_order", "room_id", "lamport", "device_id", "seq"),
    )

    cursor: Mapped[int] = mapped_column(CursorType, primary_key=True, autoincrement=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(64))
    lamport: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    sig: Mapped[str] = mapped_column(String(96))
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
