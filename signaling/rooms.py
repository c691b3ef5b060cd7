"""Who may enter a room: the three kinds of room and their member lists.

- **public**: any signed-in user may join it, read its history and post in it. A join of a
  name nobody uses creates a public room, as before rooms had kinds.
- **private**: made with `POST /api/rooms {"private": true}`; only the users on its member list
  may join, signal, upload, read its history or list its keys. The creator is its owner and
  the only one who may add or remove members; a member may remove themself.
- **direct**: a private room of exactly two users, made with `POST /api/dm`. Its name is
  derived from the two user names, so both sides reach the same room; nobody can be added or
  removed, and the `dm-` prefix is never given to a room of another kind.

The kind is fixed at creation. Every refusal is an ApiError with a code a client can act on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from protocol import InvalidName, normalize_username

from . import store
from .errors import ApiError
from .extensions import db
from .models import Membership, Message, Room, User

DM_PREFIX = "dm-"
# A private room's member list is bounded like every other input.
MAX_MEMBERS = 256


class RoomKind(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    DIRECT = "direct"


def dm_name(a: str, b: str) -> str:
    """The name of the direct room between users `a` and `b`, the same whichever asks."""
    first, second = sorted((a, b))
    digest = hashlib.sha256(f"gibberish-dm\n{first}\n{second}".encode()).hexdigest()
    return DM_PREFIX + digest[:32]


def is_restricted(room: Room | store.RoomFacts) -> bool:
    """Tell whether only the room's members may use it (private and direct rooms)."""
    return room.kind != RoomKind.PUBLIC


def not_a_member(name: str) -> ApiError:
    return ApiError(403, "not_a_member", f"room {name!r} is private and you are not a member")


def user_named(raw: Any) -> User:
    """The registered user called `raw`, or a 400/404 saying what is wrong."""
    try:
        name = normalize_username(raw)
    except InvalidName as exc:
        raise ApiError(400, "invalid_username", str(exc)) from exc
    user = db.session.scalar(select(User).where(User.username == name))
    if user is None:
        raise ApiError(404, "no_such_user", f"there is no user named {name!r}")
    return user


def readable_room(name: str, user: User) -> Room:
    """The room `name` if `user` may read it (history, keys, pages); 404 if there is none,
    403 `not_a_member` if it is private and `user` is not on its list. A direct room's name
    that was never made answers as a private one does, so trying a pair's name tells nothing."""
    room = store.get_room(name)
    if room is None:
        if name.startswith(DM_PREFIX):
            raise not_a_member(name)
        raise ApiError(404, "no_such_room", f"no room named {name!r}")
    if is_restricted(room) and not store.is_member(room, user):
        raise not_a_member(name)
    return room


def joinable_room(name: str, user: User) -> Room:
    """The room `user` joins under `name`, made public if nobody uses the name yet, with
    `user` recorded as a member; a private room refuses anyone not on its list."""
    if name.startswith(DM_PREFIX):
        room = store.get_room(name)
        if room is None or not store.is_member(room, user):
            raise not_a_member(name)
        return room
    room = store.get_or_create_room(name)
    if is_restricted(room):
        if not store.is_member(room, user):
            raise not_a_member(name)
    else:
        store.ensure_membership(room, user)
    return room


def create_room(name: str, owner: User, private: bool, members: Iterable[User]) -> Room:
    """Make a room of the chosen kind with `owner` (and `members`, for a private room) on
    its list; 409 `room_exists` if the name is taken."""
    if name.startswith(DM_PREFIX):
        raise ApiError(400, "reserved_name",
                       f"room names starting with {DM_PREFIX!r} are kept for direct messages")
    kind = RoomKind.PRIVATE if private else RoomKind.PUBLIC
    room = _insert_room(name, kind, owner.id)
    if room is None:
        raise ApiError(409, "room_exists", f"a room named {name!r} exists already")
    for user in {owner.id: owner, **{m.id: m for m in members}}.values():
        db.session.add(Membership(room_id=room.id, user_id=user.id))
    db.session.commit()
    return room


def direct_room(me: User, other: User) -> tuple[Room, bool]:
    """The direct room of `me` and `other`, made on first use; returns it and whether it is
    new. Asking again, from either side, gives the same room."""
    if me.id == other.id:
        raise ApiError(400, "invalid_member", "a direct message needs another user")
    name = dm_name(me.username, other.username)
    room = store.get_room(name)
    if room is not None:
        return room, False
    room = _insert_room(name, RoomKind.DIRECT, None)
    if room is None:  # the other side made it at the same moment
        found = store.get_room(name)
        assert found is not None
        return found, False
    db.session.add_all([Membership(room_id=room.id, user_id=me.id),
                        Membership(room_id=room.id, user_id=other.id)])
    db.session.commit()
    return room, True


def _insert_room(name: str, kind: RoomKind, owner_id: int | None) -> Room | None:
    """Insert a room, or None when its name is taken (also by a concurrent insert)."""
    if store.get_room(name) is not None:
        return None
    try:
        with db.session.begin_nested():
            room = Room(name=name, kind=kind.value, owner_id=owner_id)
            db.session.add(room)
    except IntegrityError:
        return None
    return room


def managed_room(name: str, actor: User) -> Room:
    """A private room whose member list `actor` may change (its owner), or a refusal."""
    room = readable_room(name, actor)
    if room.kind == RoomKind.DIRECT:
        raise ApiError(409, "direct_room", "a direct room always has exactly its two users")
    if room.kind == RoomKind.PUBLIC:
        raise ApiError(409, "public_room", "a public room has no member list to manage")
    return room


def add_member(room: Room, actor: User, user: User) -> bool:
    """Put `user` on a private room's list (owner only); returns whether they were new."""
    if room.owner_id != actor.id:
        raise ApiError(403, "not_owner", "only the room's owner may add members")
    if store.is_member(room, user):
        return False
    if member_count(room) >= MAX_MEMBERS:
        raise ApiError(409, "too_many_members", f"a room holds at most {MAX_MEMBERS} members")
    store.ensure_membership(room, user)
    db.session.commit()
    return True


def remove_member(room: Room, actor: User, user: User) -> None:
    """Take `user` off a private room's list: the owner may remove anyone but themself, a
    member only themself. Their live connections are dealt with by the caller."""
    if user.id == room.owner_id:
        raise ApiError(409, "owner_stays", "the owner cannot leave the member list")
    if actor.id != room.owner_id and actor.id != user.id:
        raise ApiError(403, "not_owner", "only the room's owner may remove other members")
    if not store.is_member(room, user):
        raise ApiError(404, "not_a_member", f"{user.username!r} is not a member of the room")
    db.session.execute(delete(Membership).where(
        Membership.room_id == room.id, Membership.user_id == user.id))
    db.session.commit()
    store.forget_membership(room, user)


def member_count(room: Room) -> int:
    return int(db.session.scalar(
        select(func.count()).select_from(Membership).where(Membership.room_id == room.id)) or 0)


def member_names(room: Room) -> list[str]:
    """The user names on a room's list, sorted."""
    return list(db.session.scalars(
        select(User.username).join(Membership, Membership.user_id == User.id)
        .where(Membership.room_id == room.id).order_by(User.username)).all())


def owner_name(room: Room) -> str | None:
    if room.owner_id is None:
        return None
    owner = db.session.get(User, room.owner_id)
    return owner.username if owner is not None else None


def describe(room: Room) -> dict[str, Any]:
    """What a client is told about a room: its kind, its owner and, for a private or direct
    room, the member list peers check frames against (null for a public room: anyone)."""
    return {"room": room.name, "kind": room.kind, "owner": owner_name(room),
            "members": member_names(room) if is_restricted(room) else None}


def rooms_of(user: User) -> list[dict[str, Any]]:
    """The rooms on `user`'s list (public rooms they joined, private and direct rooms they
    are a member of), each with its latest cursor so a client can count what it has not read."""
    rooms = db.session.scalars(
        select(Room).join(Membership, Membership.room_id == Room.id)
        .where(Membership.user_id == user.id).order_by(Room.name)).all()
    latest = dict(db.session.execute(
        select(Message.room_id, func.max(Message.cursor))
        .where(Message.room_id.in_([r.id for r in rooms])).group_by(Message.room_id)
    ).tuples().all()) if rooms else {}
    return [{**describe(r), "cursor": int(latest.get(r.id) or 0)} for r in rooms]
