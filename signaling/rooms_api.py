"""JSON API for rooms: the user's room list, creating public and private rooms, direct
messages, and a private room's member list (signaling/rooms.py holds the rules). Making a room
or changing a list counts against the same per-user budget as `join`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from . import events, rooms
from .api import json_body, room_name, token_required
from .errors import ApiError
from .extensions import csrf

bp = Blueprint("rooms_api", __name__, url_prefix="/api")
csrf.exempt(bp)


@bp.get("/rooms")
@token_required
def list_rooms() -> ResponseReturnValue:
    """The rooms on the user's list, each with its kind, members and latest cursor."""
    return jsonify(rooms=rooms.rooms_of(g.user))


@bp.post("/rooms")
@token_required
def create_room() -> ResponseReturnValue:
    """Make a room: `{"name", "private": bool, "members": [user names]}`; members only for a
    private room. The creator is its owner and first member."""
    events.rate_limited("join", g.user)
    data = json_body()
    private = data.get("private", False)
    if not isinstance(private, bool):
        raise ApiError(400, "invalid_request", "private must be true or false")
    raw_members = data.get("members", [])
    if not isinstance(raw_members, list):
        raise ApiError(400, "invalid_request", "members must be a list of user names")
    if raw_members and not private:
        raise ApiError(400, "invalid_request", "only a private room has a member list")
    if len(raw_members) >= rooms.MAX_MEMBERS:
        raise ApiError(400, "too_many_members",
                       f"a room holds at most {rooms.MAX_MEMBERS} members")
    members = [rooms.user_named(m) for m in raw_members]
    name = data.get("name")
    if not isinstance(name, str):
        raise ApiError(400, "invalid_room", "name must be a room name")
    room = rooms.create_room(room_name(name), g.user, private, members)
    return jsonify(rooms.describe(room)), 201


@bp.post("/dm")
@token_required
def direct_message() -> ResponseReturnValue:
    """The direct room between the user and `{"username"}`, made on first use (201), the
    same room afterwards from either side (200)."""
    events.rate_limited("join", g.user)
    other = rooms.user_named(json_body().get("username"))
    room, made = rooms.direct_room(g.user, other)
    return jsonify(rooms.describe(room)), 201 if made else 200


@bp.get("/rooms/<room>/members")
@token_required
def members(room: str) -> ResponseReturnValue:
    """The room's kind, owner and member list (null for a public room), for its members."""
    return jsonify(rooms.describe(rooms.readable_room(room_name(room), g.user)))


@bp.post("/rooms/<room>/members")
@token_required
def add_member(room: str) -> ResponseReturnValue:
    """Put `{"username"}` on a private room's member list (owner only)."""
    events.rate_limited("join", g.user)
    found = rooms.managed_room(room_name(room), g.user)
    added = rooms.add_member(found, g.user, rooms.user_named(json_body().get("username")))
    return _changed(found, 201 if added else 200)


@bp.delete("/rooms/<room>/members/<username>")
@token_required
def remove_member(room: str, username: str) -> ResponseReturnValue:
    """Take a user off a private room's list (the owner, or the member themself); it takes
    effect at once for their live connections."""
    events.rate_limited("join", g.user)
    found = rooms.managed_room(room_name(room), g.user)
    user = rooms.user_named(username)
    rooms.remove_member(found, g.user, user)
    events.evict(found, user)
    return _changed(found, 200)


def _changed(room: Any, status: int) -> ResponseReturnValue:
    events.announce_members(room)
    return jsonify(rooms.describe(room)), status
