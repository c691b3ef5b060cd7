"""Accounts: password hashing (argon2), bearer tokens, and device keys registered to a user."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from protocol import InvalidName, b64decode, b64encode, device_id_for, normalize_username

from .errors import ApiError
from .extensions import db
from .models import Device, PageSession, User
from .passwords import Passwords

TOKEN_MAX_AGE = 30 * 24 * 3600
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def _passwords() -> Passwords:
    passwords: Passwords = current_app.extensions["gibberish_passwords"]
    return passwords


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="gibberish-api-token")


def clean_username(raw: object) -> str:
    if not isinstance(raw, str):
        raise ApiError(400, "invalid_name", "username must be a string")
    try:
        return normalize_username(raw)
    except InvalidName as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc


def clean_password(raw: object) -> str:
    if not isinstance(raw, str) or not MIN_PASSWORD <= len(raw) <= MAX_PASSWORD:
        raise ApiError(
            400, "invalid_password",
            f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
    return raw


def register(username: object, password: object) -> User:
    """Create an account; the name is normalised (NFKC, case-folded) and must be free."""
    name = clean_username(username)
    secret = clean_password(password)
    user = User(username=name, password_hash=_passwords().hash(secret))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise ApiError(409, "name_taken", f"the name {name!r} is already taken") from exc
    return user


def authenticate(username: object, password: object) -> User:
    """The user whose password matches, or an ApiError that does not say which part was wrong."""
    wrong = ApiError(401, "bad_credentials", "wrong user name or password")
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        raise wrong
    try:
        name = clean_username(username)
    except ApiError:
        raise wrong from None
    user = db.session.scalar(select(User).where(User.username == name))
    passwords = _passwords()
    if not passwords.matches(user.password_hash if user else None, password) or user is None:
        raise wrong
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
        db.session.commit()
    return user


def issue_token(user: User, page_session: str | None = None) -> str:
    """A bearer token for `user`; one issued to a page session dies with that session."""
    data: dict[str, Any] = {"u": user.id, "e": user.token_epoch}
    if page_session is not None:
        data["s"] = page_session
    return str(_serializer().dumps(data))


def user_for_token(token: object) -> User | None:
    """The user a bearer token was issued to, or None if it is malformed, expired or revoked."""
    if not isinstance(token, str) or len(token) > 512:
        return None
    try:
        data: Any = _serializer().loads(token, max_age=TOKEN_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict):
        return None
    user = db.session.get(User, data.get("u"))
    if user is None or user.token_epoch != data.get("e"):
        return None
    if "s" in data and user_for_page_session(data["s"]) is not user:
        return None
    return user


def start_page_session(user: User) -> str:
    """Open a page session for `user` (dropping the user's expired ones) and return its id,
    for the session cookie."""
    now = datetime.now(UTC)
    for old in db.session.scalars(select(PageSession).where(PageSession.user_id == user.id)):
        if _expired(old, now):
            db.session.delete(old)
    session_id = secrets.token_urlsafe(32)
    db.session.add(PageSession(id=session_id, user_id=user.id, created_at=now))
    db.session.commit()
    return session_id


def user_for_page_session(session_id: object) -> User | None:
    """The user of a page session that is open and not expired, else None."""
    if not isinstance(session_id, str) or len(session_id) > 64:
        return None
    found = db.session.get(PageSession, session_id)
    if found is None or _expired(found, datetime.now(UTC)):
        return None
    return db.session.get(User, found.user_id)


def end_page_session(session_id: object) -> None:
    """Close a page session for good: its cookie, and any token issued to it, open nothing."""
    if isinstance(session_id, str) and len(session_id) <= 64:
        found = db.session.get(PageSession, session_id)
        if found is not None:
            db.session.delete(found)
            db.session.commit()


def _expired(page_session: PageSession, now: datetime) -> bool:
    created = page_session.created_at
    if created.tzinfo is None:  # SQLite gives back naive datetimes, in UTC
        created = created.replace(tzinfo=UTC)
    lifetime = current_app.config["PERMANENT_SESSION_LIFETIME"]
    return bool(now - created > lifetime)


def register_device(user: User, public_key: object, label: object = "") -> Device:
    """Register a device's Ed25519 public key to `user`; registering it again is a no-op, and a
    key already registered to someone else is refused."""
    if not isinstance(public_key, str):
        raise ApiError(400, "invalid_key", "public_key must be a base64url string")
    try:
        raw = b64decode(public_key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ApiError(400, "invalid_key", "public_key must be a 32-byte Ed25519 key, base64url")
    if not isinstance(label, str) or len(label) > 64:
        raise ApiError(400, "invalid_label", "label must be a string of at most 64 characters")
    device_id = device_id_for(raw)
    existing = db.session.get(Device, device_id)
    if existing is not None:
        if existing.user_id != user.id:
            raise ApiError(409, "key_taken", "this device key belongs to another account")
        return existing
    device = Device(id=device_id, user_id=user.id, public_key=b64encode(raw), label=label)
    db.session.add(device)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise ApiError(409, "key_taken", "this device key is already registered") from exc
    return device
