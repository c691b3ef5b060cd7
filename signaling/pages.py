"""Server-rendered pages: sign-in and registration, the history browser, the browser peer.

Pages use the session cookie (HttpOnly, SameSite=Lax) and CSRF tokens on every form; every
piece of user text goes through Jinja's autoescaping, and a Content-Security-Policy lets a page
run only the scripts served from `static/`. The browser peer trades its session for a bearer
token (`POST /session/token`, CSRF-protected) to use the JSON API and Socket.IO as agents do."""

from __future__ import annotations

from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response

from protocol import InvalidName, normalize_room
from protocol.paging import order_token, parse_order_token
from protocol.timestamps import iso_utc, short_utc

from . import accounts, rooms, store
from .errors import ApiError
from .extensions import db, limiter
from .models import Membership, Room, User
from .ratelimit import sign_in_key, sign_in_per_address, sign_in_per_name

bp = Blueprint("pages", __name__)

HISTORY_PAGE = 50

# Scripts, styles and connections only from this origin; no inline script, no plugin, no
# framing. Jinja's escaping is the first defence against markup in messages, this the second.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@bp.after_request
def page_headers(response: Response) -> Response:
    """Every page gets the CSP above; a page showing a user's chat is never cached."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if g.get("page_user") is not None:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.before_app_request
def load_session_user() -> None:
    """The signed-in user, from a page session the server still holds (signing out deletes
    it, so a cookie copied before opens nothing after). Not for the static files: a page
    loads a score of modules, and a query each made a page load cost the server a quarter of
    its time in this look-up (bench.browser's mesh race, py-spy)."""
    if request.endpoint in ("static", "assets.asset"):
        return
    g.page_user = accounts.user_for_page_session(session.get("sid"))


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
    accounts.end_page_session(session.get("sid"))
    session.clear()
    session["sid"] = accounts.start_page_session(user)
    session.permanent = True


@bp.get("/")
def index() -> ResponseReturnValue:
    rooms: list[str] = []
    if g.page_user is not None:
        rooms = list(db.session.scalars(
            select(Room.name).join(Membership, Membership.room_id == Room.id)
            .where(Membership.user_id == g.page_user.id).order_by(Room.name)
        ).all())
    target = request.args.get("next", "")
    return render_template("index.html", rooms=rooms, next=target, joining=_joining(target))


def _joining(target: str) -> str | None:
    """The room a sign-in leads to, when `next` is a browser peer page, to say so."""
    parts = urlsplit(target).path.split("/")
    if len(parts) == 3 and parts[0] == "" and parts[1] == "rooms":
        try:
            return normalize_room(parts[2])
        except InvalidName:
            return None
    return None


@bp.post("/login")
@limiter.limit(sign_in_per_name, key_func=sign_in_key)
@limiter.limit(sign_in_per_address)
def login() -> ResponseReturnValue:
    try:
        user = accounts.authenticate(request.form.get("username"), request.form.get("password"))
    except ApiError as exc:
        flash(exc.message, "error")
        target = request.form.get("next", "")
        return render_template("index.html", rooms=[], next=target,
                               joining=_joining(target)), 401
    _start_session(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/register")
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
def register() -> ResponseReturnValue:
    try:
        user = accounts.register(request.form.get("username"), request.form.get("password"))
    except ApiError as exc:
        flash(exc.message, "error")
        target = request.form.get("next", "")
        return render_template("index.html", rooms=[], next=target,
                               joining=_joining(target)), 400
    _start_session(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    accounts.end_page_session(session.get("sid"))
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
    view = "pages.history" if request.form.get("view") == "history" else "pages.browser_peer"
    return redirect(url_for(view, room=name))


@bp.post("/session/token")
def session_token() -> ResponseReturnValue:
    """A bearer token for the signed-in page user, so the browser peer can use the JSON API
    and Socket.IO like an agent. CSRF-protected (X-CSRFToken header), so another site cannot
    obtain one through the user's cookie."""
    if g.page_user is None:
        return jsonify(error={"code": "unauthorized", "message": "sign in first"}), 401
    return jsonify(user={"username": g.page_user.username},
                   token=accounts.issue_token(g.page_user, session.get("sid")))


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
    refusal = _refusal(name)
    if refusal is not None:
        return refusal
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
    """The browser peer: the chat UI in the page, joining the room with the browser's WebRTC."""
    try:
        name = normalize_room(room)
    except InvalidName:
        abort(404)
    if name != room:
        return redirect(url_for("pages.browser_peer", room=name))
    refusal = _refusal(name)
    if refusal is not None:
        return refusal
    return render_template("room.html", room=name, title=_title(name))


def _title(name: str) -> str:
    """How the page names a room: `#name`, or `@other` for a direct room (its name is a hash)."""
    found = store.get_room(name)
    if found is not None and found.kind == "direct":
        others = [m for m in rooms.member_names(found) if m != g.page_user.username]
        if others:
            return f"@{others[0]}"
    return f"#{name}"


def _refusal(name: str) -> ResponseReturnValue | None:
    """A 403 page if the signed-in user may not see room `name` (a private room they are not
    a member of), else None: a room that does not exist yet is the user's to open."""
    try:
        rooms.readable_room(name, g.page_user)
    except ApiError as exc:
        if exc.code == "not_a_member":
            return render_template("error.html", code=exc.status, message=exc.message), 403
    return None


@bp.app_template_filter("isotime")
def isotime(ms: int) -> str:
    """The author's timestamp as ISO 8601 in UTC, or "" past the year 9999 (protocol.timestamps:
    every stored `ts` renders, whatever its value)."""
    return iso_utc(ms) or ""


@bp.app_template_filter("shorttime")
def shorttime(ms: int) -> str:
    """The author's timestamp for people, or "after 9999" (protocol.timestamps)."""
    return short_utc(ms)
