"""Socket.IO events: sign-in on connect, join/leave with presence, signal relay, log uploads.

Every handler answers through the acknowledgement: `{"ok": True, …}` or
`{"ok": False, "error": {"code", "message"}}`. Refusals are logged and never disconnect."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import current_app, request
from flask_socketio import ConnectionRefusedError, emit, join_room, leave_room
from pydantic import ValidationError
from sqlalchemy import delete, select

from protocol import Envelope, ProtocolError, check_lamport_horizon, verify_envelopes

from . import accounts, relay, rooms, store
from .errors import ApiError, error_body
from .extensions import db, rollback_quietly, socketio, verify_pool
from .models import Device, Presence, Room, User
from .presence import channel, presence_epoch
from .ratelimit import EventLimits
from .schemas import JoinRequest, LeaveRequest, PublishRequest, SignalRequest, first_error
from .turn import ice_servers_for

log = logging.getLogger("gibberish.signaling")


@dataclass(frozen=True)
class Connected:
    """Who a connection signed in as, read from its token when it connected. An open
    connection stays signed in until it closes (docs/security.md), so this is what each of its
    events would read from the database again; user names never change."""

    id: int
    username: str


# sid -> its user, for the connections this process holds (a sid lives on one process).
_connections: dict[str, Connected] = {}


def peer_dict(p: Presence) -> dict[str, Any]:
    # `epoch` grows with every join of a device: peers order the join reply, peer_joined,
    # peer_left and signals of one device by it (protocol/roster.py).
    return {"user": p.user.username, "device": p.device_id, "public_key": p.device.public_key,
            "rendezvous": p.rendezvous, "epoch": presence_epoch(p.joined_at)}


def _refuse(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def connected() -> Connected:
    """The connection's user as it signed in, without a query."""
    who = _connections.get(request.sid)  # type: ignore[attr-defined]
    if who is None:
        raise _refuse(401, "unauthorized", "this connection is not signed in")
    return who


def current_user() -> User:
    user = db.session.get(User, connected().id)
    if user is None:
        raise _refuse(401, "unauthorized", "this connection is not signed in")
    return user


def _limits() -> EventLimits:
    limits: EventLimits = current_app.extensions["gibberish_event_limits"]
    return limits


def rate_limited(name: str, user: User | Connected, cost: int = 1, *,
                 room: str | None = None) -> None:
    """Count `cost` hits of the limit `name` for the user (for the user in `room` if given);
    a 429 `rate_limited` naming the limit when it is passed."""
    who = str(user.id) if room is None else f"{user.id}|{room}"
    if not _limits().allow(name, who, cost):
        what = name.replace("_", " ") + ("" if room is None else f" of {room}")
        raise _refuse(429, "rate_limited",
                      f"too many {what} requests: the limit is {_limits().describe(name)}")


def acked(event: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Turn a handler's refusals into `{"ok": False, "error": …}` acks, and log them."""

    def decorate(handler: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        @wraps(handler)
        def wrapped(data: Any = None) -> dict[str, Any]:
            sid = request.sid  # type: ignore[attr-defined]
            try:
                return {"ok": True, **handler(data)}
            except ValidationError as exc:
                err: Exception = ApiError(400, "invalid_request", first_error(exc))
            except (ApiError, ProtocolError) as exc:
                err = exc
            except Exception:
                rollback_quietly()
                log.exception("%s from %s failed", event, sid)
                return {"ok": False, **error_body(RuntimeError())}
            rollback_quietly()
            who = _connections.get(sid)
            log.warning("%s refused for %s (user %s): %s", event, sid,
                        who.id if who is not None else None, err)
            return {"ok": False, **error_body(err)}

        socketio.on_event(event, wrapped)
        return wrapped

    return decorate


@socketio.on("connect")  # type: ignore[untyped-decorator]
def on_connect(auth: Any = None) -> None:
    token = auth.get("token") if isinstance(auth, dict) else None
    if token is None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    user = accounts.user_for_token(token)
    if user is None:
        log.warning("socket connection refused from %s: no valid token", request.remote_addr)
        raise ConnectionRefusedError("unauthorized: a valid bearer token is required")
    _connections[request.sid] = Connected(user.id, user.username)  # type: ignore[attr-defined]


@socketio.on("disconnect")  # type: ignore[untyped-decorator]
def on_disconnect(reason: Any = None) -> None:
    sid = request.sid  # type: ignore[attr-defined]
    _connections.pop(sid, None)
    rows = db.session.scalars(select(Presence).where(Presence.sid == sid)).all()
    gone = [(db.session.get(Room, p.room_id), p.device_id, p.user.username,
             presence_epoch(p.joined_at)) for p in rows]
    for p in rows:
        db.session.delete(p)
    db.session.commit()
    for room, device, user, epoch in gone:
        if room is not None:
            emit("peer_left", {"room": room.name, "device": device, "user": user, "epoch": epoch},
                 to=channel(room.name))


@acked("join")
def on_join(data: Any) -> dict[str, Any]:
    """Enter a room with one of the user's devices; answers with the roster of the others."""
    user = current_user()
    # Every join of the user counts (malformed ones too), under a budget for all rooms wide
    # enough for a device in many rooms joining them all again after a reconnection (one
    # connection per device); repeated joins of one room have a tighter budget of their own.
    rate_limited("join_rooms", user)
    req = JoinRequest.model_validate(data)
    rate_limited("join_room", user, room=req.room)
    device = db.session.get(Device, req.device)
    if device is None or device.user_id != user.id:
        raise _refuse(403, "unknown_device",
                      "this device key is not registered to your account; POST /api/devices")
    room = rooms.joinable_room(req.room, user)
    sid = request.sid  # type: ignore[attr-defined]
    # Enter the Socket.IO room before our presence becomes visible: of two devices joining at
    # once, the later one reads the earlier in the roster, and the earlier one (already
    # listening) gets the later one's peer_joined. The other order loses one of them.
    join_room(channel(room.name))
    # A device that reconnects replaces its stale entry (the old connection may be half dead).
    db.session.execute(delete(Presence).where(
        Presence.room_id == room.id, Presence.device_id == device.id))
    me = Presence(room_id=room.id, user_id=user.id, device_id=device.id, sid=sid,
                  server_id=current_app.config["SERVER_ID"], rendezvous=req.rendezvous)
    db.session.add(me)
    db.session.flush()
    # Read before the commit, which would expire them all and cost a query each to read back.
    you, described, restricted = peer_dict(me), rooms.describe(room), rooms.is_restricted(room)
    room_id, me_id, username = room.id, me.id, user.username
    db.session.commit()
    if restricted and not _still_member(room, user):
        # Removed between the check above and our presence: take the presence back.
        db.session.delete(me)
        db.session.commit()
        leave_room(channel(room.name))
        raise rooms.not_a_member(room.name)
    others = db.session.scalars(
        select(Presence).where(Presence.room_id == room_id, Presence.id != me_id)
        .order_by(Presence.joined_at, Presence.id)
    ).all()
    emit("peer_joined", {"room": described["room"], "peer": you},
         to=channel(described["room"]), include_self=False)
    return {
        **described,
        "you": you,
        "peers": [peer_dict(p) for p in others],
        "ice_servers": ice_servers_for(current_app.config["ICE_SERVERS"],
                                       current_app.config.get("TURN"), username,
                                       time.time()),
        "ice_ttl": current_app.config["TURN"].ttl if current_app.config.get("TURN") else None,
        "cursor": store.latest_cursor(room_id),
    }


@acked("leave")
def on_leave(data: Any) -> dict[str, Any]:
    user = current_user()
    req = LeaveRequest.model_validate(data)
    room = store.get_room(req.room)
    sid = request.sid  # type: ignore[attr-defined]
    if room is not None:
        rows = db.session.scalars(select(Presence).where(
            Presence.room_id == room.id, Presence.sid == sid)).all()
        for p in rows:
            db.session.delete(p)
            emit("peer_left", {"room": room.name, "device": p.device_id, "user": user.username,
                               "epoch": presence_epoch(p.joined_at), "reason": "left"},
                 to=channel(room.name), include_self=False)
        db.session.commit()
    leave_room(channel(req.room))
    return {"room": req.room}


@acked("signal")
def on_signal(data: Any) -> dict[str, Any]:
    """Forward an offer, answer or candidate to one device of a room both ends are in."""
    user = connected()
    rate_limited("signal", user)
    req = SignalRequest.model_validate(data)
    route = relay.find_route(req.room, request.sid, user.id, req.to)  # type: ignore[attr-defined]
    if route is None or route.sender_device is None:
        raise _refuse(403, "not_in_room", f"join room {req.room!r} before signalling in it")
    if route.restricted and not route.sender_is_member:
        raise rooms.not_a_member(route.room_name)
    if route.target_sid is None or (route.restricted and not route.target_is_member):
        raise _refuse(404, "no_such_peer", f"device {req.to} is not in room {req.room!r}")
    assert route.sender_joined_at is not None
    emit("signal", {
        "room": route.room_name,
        "from": {"user": user.username, "device": route.sender_device,
                 "public_key": route.sender_key, "epoch": presence_epoch(route.sender_joined_at)},
        "kind": req.kind, "payload": req.payload,
    }, to=route.target_sid,
        # A target on this process is reached at once; publishing to the other processes
        # too would cost a round trip to Redis that none of them needs.
        ignore_queue=route.target_server == current_app.config["SERVER_ID"])
    return {}


def _checked(raw: dict[str, Any], uploader: Connected,
             ) -> tuple[store.RoomFacts, Envelope, str]:
    """Parse one uploaded envelope and check everything but its signature: the room, the
    uploader's membership, the author's key; returns that key to verify it with."""
    env = Envelope.from_dict(raw)
    room = store.room_facts(env.room)
    if room is None or not store.is_member(room, uploader):
        if room is not None and rooms.is_restricted(room):
            raise rooms.not_a_member(env.room)
        raise _refuse(403, "not_in_room", f"join room {env.room!r} before uploading to it")
    owner = store.device_owner(env.device)
    if owner is None or owner.username != env.author:
        raise _refuse(403, "unknown_author",
                      f"device {env.device} is not a registered key of {env.author!r}")
    if rooms.is_restricted(room) and not store.is_member_named(room, env.author):
        raise _refuse(403, "author_not_a_member",
                      f"{env.author!r} is not a member of private room {env.room!r}")
    return room, env, owner.public_key


@acked("publish")
def on_publish(data: Any) -> dict[str, Any]:
    """Store signed envelopes in the room log, idempotently, and acknowledge each with its
    server cursor. Any member may upload a message it holds on behalf of its author: the
    signature, checked against the author's registered key, makes that safe."""
    user = connected()  # as signed in: no query per upload (on_signal does the same)
    req = PublishRequest.model_validate(data)
    try:
        raws = req.items()
    except ValueError as exc:
        raise _refuse(400, "invalid_request", str(exc)) from exc
    rate_limited("publish", user, cost=max(1, len(raws)))
    results: list[dict[str, Any] | None] = [None] * len(raws)
    by_room: dict[int, tuple[store.RoomFacts, list[tuple[int, Envelope]]]] = {}
    checked: list[tuple[int, store.RoomFacts, Envelope, str]] = []
    for i, raw in enumerate(raws):
        try:
            checked.append((i, *_checked(raw, user)))
        except (ApiError, ProtocolError) as exc:
            results[i] = _refused_upload(user, _raw_id(raw), exc)
    # The batch's signatures are checked together, on every core.
    problems = verify_envelopes([(env, key) for _, _, env, key in checked], verify_pool)
    now_ms = int(time.time() * 1000)
    for (i, room, env, _), problem in zip(checked, problems, strict=True):
        try:
            if problem is not None:
                raise problem
            # A Lamport time far past the clock would leave nobody able to post after it.
            check_lamport_horizon(env, now_ms)
        except ProtocolError as exc:
            results[i] = _refused_upload(user, env.id, exc)
            continue
        by_room.setdefault(room.id, (room, []))[1].append((i, env))
    for room, items in by_room.values():
        outcomes = store.store_envelopes(room, [env for _, env in items])
        fresh: list[dict[str, Any]] = []
        for (i, env), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, store.Stored):
                results[i] = {"ok": True, "id": outcome.id, "cursor": outcome.cursor,
                              "duplicate": outcome.duplicate}
                if not outcome.duplicate:
                    fresh.append({"id": outcome.id, "cursor": outcome.cursor})
            else:
                log.warning("upload conflict from %s: %s", user.username, outcome)
                results[i] = {"ok": False, "id": env.id, **error_body(outcome)}
        if fresh:
            emit("stored", {"room": room.name, "messages": fresh}, to=channel(room.name))
    if req.envelope is not None:
        single = results[0]
        assert single is not None
        if not single["ok"]:
            raise _AckError(single)
        return {k: v for k, v in single.items() if k != "ok"}
    return {"results": results}


class _AckError(ApiError):
    """A single-envelope upload refused: its result is the ack."""

    def __init__(self, result: dict[str, Any]) -> None:
        err = result["error"]
        super().__init__(400, err["code"], err["message"])


def _refused_upload(user: Connected, envelope_id: str | None,
                    exc: ApiError | ProtocolError) -> dict[str, Any]:
    log.warning("upload refused from %s: %s", user.username, exc)
    return {"ok": False, "id": envelope_id, **error_body(exc)}


def _raw_id(raw: dict[str, Any]) -> str | None:
    device, seq = raw.get("device"), raw.get("seq")
    return f"{device}:{seq}" if isinstance(device, str) and isinstance(seq, int) else None


def _still_member(room: Room, user: User) -> bool:
    """Membership read afresh from the database, past this request's cache."""
    store.forget_membership(room, user)
    return store.is_member(room, user)


def announce_members(room: Room) -> None:
    """Tell everyone in the room its member list changed (`members`), so peers check frames
    against the new list."""
    socketio.emit("members", rooms.describe(room), to=channel(room.name))


def evict(room: Room, user: User) -> None:
    """Take a user just removed from a room out of it at once: their presence goes, the
    room hears `peer_left` for each of their devices, and each of their connections gets
    `removed` and stops receiving the room's notices (on whichever process holds it)."""
    rows = db.session.scalars(select(Presence).where(
        Presence.room_id == room.id, Presence.user_id == user.id)).all()
    gone = [(p.sid, p.device_id) for p in rows]
    for p in rows:
        db.session.delete(p)
    db.session.commit()
    for sid, device in gone:
        socketio.server.leave_room(sid, channel(room.name), namespace="/")
        socketio.emit("removed", {"room": room.name}, to=sid)
        socketio.emit("peer_left", {"room": room.name, "device": device, "user": user.username},
                      to=channel(room.name))
