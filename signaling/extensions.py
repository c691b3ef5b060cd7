"""Flask extensions, created unbound at import time and bound to an app in `create_app`."""

import os
from concurrent.futures import ThreadPoolExecutor

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every model; Flask-SQLAlchemy builds `db.Model` on it."""


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# Threading mode with simple-websocket: see README ("Why not eventlet").
socketio = SocketIO()
# Checks an upload batch's signatures beside the request's thread (protocol.verify_envelopes);
# its threads start on first use, so a forking server starts them in each worker.
verify_pool = ThreadPoolExecutor(len(os.sched_getaffinity(0)), thread_name_prefix="ed25519")


def rollback_quietly() -> None:
    """Roll back the session's transaction. When the connection died under it (the database
    restarted, or `pg_terminate_backend`), the rollback fails too: the session then discards
    the connection (the pool replaces it) instead of raising, so the caller can still answer."""
    try:
        db.session.rollback()
    except SQLAlchemyError:
        db.session().invalidate()
