"""JSON API for agents and scripts: accounts, device keys, room keys and history.

Authenticated with a bearer token (`Authorization: Bearer …`), never with the page cookie,
so a page on another site cannot act through a signed-in user's browser."""

from __future__ import annotations

import time
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from protocol import InvalidName, normalize_room

from . import accounts, rooms, store
from .errors import ApiError
from .extensions import csrf, db, limiter
from .models import Device, Membership, User
from .ratelimit import sign_in_key, sign_in_per_address, sign_in_per_name
from .turn import ice_servers_for

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)

MAX_PAGE = 500
DEFAULT_PAGE = 100

P = ParamSpec("P")
R = TypeVar("R")


def json_body() -> dict[str, Any]:
    """The request's JSON object; anything else is a 400 `invalid_json` saying what is wrong
    (signaling/json_provider.py)."""
    data = request.get_json()
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return data


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token else None


def token_required(view: Any) -> Any:
    """Run `view` with `g.user` set from the bearer token, or answer 401."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user = accounts.user_for_token(bearer_token())
        if user is None:
            raise ApiError(401, "unauthorized", "a valid bearer token is required; POST /api/login")
        g.user = user
        return view(*args, **kwargs)

    return wrapped


def room_name(raw: str) -> str:
    try:
        return normalize_room(raw)
    except InvalidName as exc:
        raise ApiError(400, "invalid_room", str(exc)) from exc


def clamp_int(name: str, default: int, low: int, high: int) -> int:
    """An integer query argument clamped into [low, high]; junk is a 400, not a crash."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_argument", f"{name} must be an integer") from None
    return max(low, min(high, value))


@bp.post("/register")
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
def register() -> ResponseReturnValue:
    data = json_body()
    user = accounts.register(data.get("username"), data.get("password"))
    return jsonify(user={"username": user.username}, token=accounts.issue_token(user)), 201


@bp.post("/login")
@limiter.limit(sign_in_per_name, key_func=sign_in_key)
@limiter.limit(sign_in_per_address)
def login() -> ResponseReturnValue:
    data = json_body()
    user = accounts.authenticate(data.get("username"), data.get("password"))
    return jsonify(user={"username": user.username}, token=accounts.issue_token(user))


@bp.get("/me")
@token_required
def me() -> ResponseReturnValue:
    user: User = g.user
    return jsonify(
        user={"username": user.username},
        devices=[{"id": d.id, "public_key": d.public_key, "label": d.label} for d in user.devices],
    )


@bp.post("/devices")
@token_required
def add_device() -> ResponseReturnValue:
    data = json_body()
    device = accounts.register_device(g.user, data.get("public_key"), data.get("label", ""))
    return jsonify(device={"id": device.id, "public_key": device.public_key}), 201


@bp.get("/config")
@token_required
def client_config() -> ResponseReturnValue:
    """What a peer needs to connect: the ICE servers to hand to RTCPeerConnection, with TURN
    credentials minted for this user, and how many seconds those stay valid (null: forever)."""
    turn = current_app.config.get("TURN")
    return jsonify(
        ice_servers=ice_servers_for(current_app.config["ICE_SERVERS"], turn, g.user.username,
                                    time.time()),
        ice_ttl=turn.ttl if turn is not None else None)


@bp.get("/rooms/<room>/keys")
@token_required
def room_keys(room: str) -> ResponseReturnValue:
    """Every device key of every member of a room, so a peer can verify messages of authors
    who are offline; for a private room, only its members' keys, and only to its members."""
    found = rooms.readable_room(room_name(room), g.user)
    rows = db.session.execute(
        select(Device.id, Device.public_key, User.username)
        .join(User, Device.user_id == User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.room_id == found.id)
        .order_by(Device.id)
    ).all()
    return jsonify(devices=[{"id": d, "public_key": k, "user": u} for d, k, u in rows])


@bp.get("/rooms/<room>/messages")
@token_required
def messages(room: str) -> ResponseReturnValue:
    """Messages stored after cursor `after`, in insertion order; `next` is the cursor to ask
    for next, or null when this page reached the end of the log."""
    name = room_name(room)
    after = clamp_int("after", 0, 0, 2**63 - 1)
    limit = clamp_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    found = rooms.readable_room(name, g.user)
    rows = store.page_after_cursor(found, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify(
        room=name,
        messages=[store.message_dict(r, name) for r in rows],
        next=rows[-1].cursor if more else None,
    )
