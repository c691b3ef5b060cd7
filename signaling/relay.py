"""The signal relay's lookup: everything a `signal` must check, read in one query.

A signal may pass from the device a connection joined a room with to another device present in
that room; in a private or direct room both users must be on its member list. Peers send
several signals per link (offer, answer, candidates) while a room's mesh forms, so the relay
reads the room, the sender's and the target's presence, the sender's key and both
memberships in one statement rather than one query each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import aliased

from .extensions import db
from .models import Device, Membership, Presence, Room
from .rooms import RoomKind


@dataclass(frozen=True)
class Route:
    """What one signal's checks and delivery need. Fields about the sender are None when the
    connection has not joined the room; fields about the target when the device is not in it."""

    room_name: str
    restricted: bool  # a private or direct room: only members may signal in it
    sender_device: str | None
    sender_key: str | None
    sender_joined_at: datetime | None
    sender_is_member: bool
    target_sid: str | None
    target_server: str | None  # the process holding the target's connection
    target_is_member: bool


_sender = aliased(Presence)
_target = aliased(Presence)
_sender_member = aliased(Membership)
_target_member = aliased(Membership)
_sender_device = aliased(Device)

# Built once with bound parameters, so that SQLAlchemy's compiled-statement cache finds it
# without building and hashing the statement again for every signal.
_ROUTE = (
    select(Room.name, Room.kind, _sender.device_id, _sender_device.public_key,
           _sender.joined_at, _sender_member.user_id, _target.sid, _target.server_id,
           _target_member.user_id)
    .select_from(Room)
    # Should one connection have joined the room with two devices, the row of the first one
    # joined speaks for it.
    .outerjoin(_sender, and_(_sender.room_id == Room.id, _sender.sid == bindparam("sid"),
                             _sender.user_id == bindparam("user_id")))
    .outerjoin(_sender_device, _sender_device.id == _sender.device_id)
    .outerjoin(_sender_member, and_(_sender_member.room_id == Room.id,
                                    _sender_member.user_id == bindparam("user_id")))
    .outerjoin(_target, and_(_target.room_id == Room.id, _target.device_id == bindparam("to")))
    .outerjoin(_target_member, and_(_target_member.room_id == Room.id,
                                    _target_member.user_id == _target.user_id))
    .where(Room.name == bindparam("room"))
    .order_by(_sender.id)
    .limit(1)
)


def find_route(room: str, sid: str, user_id: int, to: str) -> Route | None:
    """The route of a signal from connection `sid` (signed in as `user_id`) to device `to`
    in `room`, or None if there is no such room."""
    row = db.session.execute(
        _ROUTE, {"room": room, "sid": sid, "user_id": user_id, "to": to}).first()
    if row is None:
        return None
    (name, kind, device, key, joined_at, sender_member, target_sid, target_server,
     target_member) = row
    return Route(name, kind != RoomKind.PUBLIC, device, key, joined_at,
                 sender_member is not None, target_sid, target_server, target_member is not None)
