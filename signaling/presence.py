"""Presence bookkeeping that outlives a connection: clearing entries left by a dead process."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import delete, inspect

from .extensions import db
from .models import Presence


def clear_presence(app: Flask) -> int:
    """Forget presence left by a previous run. A single process (no Redis queue) owns every
    connection, so at start nobody is connected; with several processes sharing Redis only
    this process's own entries could be stale, and a fresh process has none."""
    if app.config.get("REDIS_URL") or not inspect(db.engine).has_table("presence"):
        return 0
    result = db.session.execute(delete(Presence))
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
