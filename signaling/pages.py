"""Server-rendered pages: sign-in and registration, the history browser, the browser peer.

Pages use the session cookie (HttpOnly, SameSite=Lax) and CSRF tokens on every form; every
piece of user text goes through Jinja's autoescaping."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from protocol import InvalidName, normalize_room
from protocol.paging import order_token, parse_order_token

from . import accounts, store
from .errors import ApiError
from .extensions import db, limiter
from .models import Membership, Room, User
from .ratelimit import sign_in_key, sign_in_per_address, sign_in_per_name

bp = Blueprint("pages", __name__)

HISTORY_PAGE = 50


@bp.before_app_request
def load_session_user() -> None:
    user_id = session.get("user_id")
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is not None and session.get("epoch") != user.token_epoch:
        user = None
    g.page_user = user


def login_required(view: Any) -> Any:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.page_user is None:
            return redirect(url_for("pages.index", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("pages.index")


def _start_session(user: User) -> None:
    session.clear()
    session["user_id"] = user.id
    session["epoch"] = user.token_epoch
    session.permanent = True


@bp.get("/")
def index() -> ResponseReturnValue:
    rooms: list[str] = []
    if g.page_user is not None:
        rooms = list(db.session.scalars(
            select(Room.name).join(Membership, Membership.room_id == Room.id)
            .where(Membership.user_id == g.page_user.id).order_by(Room.name)
        ).all())
    return render_template("index.html", rooms=rooms, next=request.args.get("next", ""))


@bp.post("/login")
@limiter.limit(sign_in_per_name, key_func=sign_in_key)
@limiter.limit(sign_in_per_address)
def login() -> ResponseReturnValue:
    try:
        user = accounts.authenticate(request.form.get("username"), request.form.get("password"))
    except ApiError as exc:
        flash(exc.message, "error")
        return render_template("index.html", rooms=[], next=request.form.get("next", "")), 401
    _start_session(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/register")
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
def register() -> ResponseReturnValue:
    try:
        user = accounts.register(request.form.get("username"), request.form.get("password"))
    except ApiError as exc:
        flash(exc.message, "error")
        return render_template("index.html", rooms=[], next=request.form.get("next", "")), 400
    _start_session(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("pages.index"))


@bp.post("/go")
@login_required
def go_to_room() -> ResponseReturnValue:
    try:
        name = normalize_room(request.form.get("room", ""))
    except InvalidName as exc:
        flash(str(exc), "error")
        return redirect(url_for("pages.index"))
    return redirect(url_for("pages.history", room=name))


@bp.get("/rooms/<room>/history")
@login_required
def history(room: str) -> ResponseReturnValue:
    try:
        name = normalize_room(room)
    except InvalidName:
        abort(404)
    if name != room:
        query_string = request.query_string.decode()
        target = url_for("pages.history", room=name)
        return redirect(target + ("?" + query_string if query_string else ""))
    found = store.get_room(name)
    query = request.args.get("q", "")[:200]
    before = parse_order_token(request.args.get("before"))
    after = parse_order_token(request.args.get("after"))
    rows, more = ([], False) if found is None else store.page_in_display_order(
        found, before=before, after=None if before else after, limit=HISTORY_PAGE, query=query)
    older = newer = None
    if rows:
        first = order_token((rows[0].lamport, rows[0].device_id, rows[0].seq))
        last = order_token((rows[-1].lamport, rows[-1].device_id, rows[-1].seq))
        if before is None and after is not None:  # paging forward, toward the newest
            older, newer = first, (last if more else None)
        else:  # the newest page, or paging back toward the oldest
            older, newer = (first if more else None), (last if before is not None else None)
    return render_template(
        "history.html", room=name, exists=found is not None, messages=rows, query=query,
        older=older, newer=newer,
    )


@bp.get("/rooms/<room>")
@login_required
def browser_peer(room: str) -> ResponseReturnValue:
    try:
        name = normalize_room(room)
    except InvalidName:
        abort(404)
    return render_template("room.html", room=name)


@bp.app_template_filter("isotime")
def isotime(ms: int) -> str:
    """The author's timestamp (milliseconds since the epoch) as ISO 8601 in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


@bp.app_template_filter("shorttime")
def shorttime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
