"""The Gibberish signaling and history server (Flask + Flask-SocketIO + SQLAlchemy)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import socketio as socketio_module
from flask import Flask, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from . import config as config_module
from .errors import ApiError
from .extensions import csrf, db, limiter, migrate, rollback_quietly, socketio
from .json_provider import ApiRequest, StrictJSONProvider
from .message_queue import RedisQueue
from .packets import JsonPacket, refuse_malformed_packets
from .passwords import Passwords
from .ratelimit import EventLimits

ROOT = Path(__file__).resolve().parent.parent
MAX_REQUEST_BYTES = 64 * 1024
# Largest Socket.IO/Engine.IO message: a batch of MAX_BATCH envelopes of 16 KiB each would be
# 1.6 MB; uploads are paced in batches well under that, and anything bigger is refused.
MAX_SOCKET_MESSAGE_BYTES = 1024 * 1024
# Rate-limit counters in Redis: a request waits at most a second for them, then falls back.
REDIS_COUNTER_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Configuration comes from the environment; `test_config` overrides it."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("INSTANCE_PATH") or None,
        instance_relative_config=True,
        static_folder=str(ROOT / "static"),
        template_folder=str(ROOT / "templates"),
    )
    # One JSON decoding policy for every request body (signaling/json_provider.py).
    app.json = StrictJSONProvider(app)
    app.request_class = ApiRequest
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SERVER_ID=uuid.uuid4().hex,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.config.update(config_module.from_environment(app.instance_path))
    if test_config:
        app.config.update(test_config)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", config_module.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["DATABASE_POOL_SIZE"]))
    redis_url: str | None = app.config["REDIS_URL"]
    prefix: str = app.config["REDIS_PREFIX"]
    storage = redis_url or "memory://"
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage)
    # Sign-in limits keep counting in memory while Redis is down rather than refusing sign-in.
    app.config.setdefault("RATELIMIT_KEY_PREFIX", prefix)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    if redis_url:
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", REDIS_COUNTER_OPTIONS)

    app.extensions["gibberish_passwords"] = Passwords(app.config["PASSWORD_HASHER"])
    db.init_app(app)
    # Runs before Flask-SQLAlchemy's own teardown (teardowns run in reverse order), so that a
    # connection killed after the last statement cannot make the teardown raise: a Socket.IO
    # acknowledgement is sent only after the teardown, and would be lost.
    app.teardown_appcontext(lambda exc: rollback_quietly())
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    app.extensions["gibberish_event_limits"] = EventLimits(storage, prefix, {
        "signal": app.config["RATELIMIT_SIGNAL"],
        "publish": app.config["RATELIMIT_PUBLISH"],
        "join": app.config["RATELIMIT_JOIN"],
        "join_room": app.config["RATELIMIT_JOIN_ROOM"],
        "join_rooms": app.config["RATELIMIT_JOIN_ROOMS"],
    })
    # The manager is always passed, so that an app made after one with Redis (the extension
    # object is shared) does not inherit its queue.
    manager: Any = socketio_module.Manager()
    if redis_url:
        manager = RedisQueue(redis_url, channel=f"{prefix}-socketio")
    socketio.init_app(
        app,
        async_mode="threading",
        # Each client's events are handled in the thread that reads its WebSocket, in order,
        # rather than in a thread started per event: starting that thread and handing the
        # packet to it was about an eighth of the server's CPU per upload in a live room
        # (`python -m bench.ingest --batch 3`). Nothing here waits on a reply from the
        # same client (python-socketio refuses `call()` in this mode).
        async_handlers=False,
        cors_allowed_origins=app.config["CORS_ORIGINS"],
        max_http_buffer_size=MAX_SOCKET_MESSAGE_BYTES,
        serializer=JsonPacket,
        # Named loggers rather than False: with False, python-socketio and python-engineio add
        # a handler of their own, and each error is written twice.
        logger=_quiet_logger("gibberish.socketio"),
        engineio_logger=_quiet_logger("gibberish.engineio"),
        client_manager=manager,
    )
    refuse_malformed_packets(socketio.server)

    from . import api, assets, events, health, pages, rooms_api  # noqa: F401  (events: handlers)

    app.register_blueprint(api.bp)
    app.register_blueprint(rooms_api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    assets.init_app(app)
    _register_error_handlers(app)
    logging.getLogger("gibberish").setLevel(logging.INFO)
    return app


def _quiet_logger(name: str) -> logging.Logger:
    """A logger for a library that logs every packet at INFO: warnings and errors only."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    return logger


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _register_error_handlers(app: Flask) -> None:
    @app.before_request
    def refuse_oversized_bodies() -> None:
        # Flask enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse up front so
        # every oversized request gets the same 413 whatever its content type.
        length = request.content_length
        if length is not None and length > MAX_REQUEST_BYTES:
            abort(413)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> ResponseReturnValue:
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        code = exc.code or 500
        names = {413: "too_large", 429: "rate_limited", 404: "not_found", 405: "bad_method",
                 400: "bad_request", 500: "internal"}
        message = exc.description or exc.name
        if code == 413:
            message = f"request larger than {MAX_REQUEST_BYTES} bytes"
        if code == 429:
            message = f"too many requests: the limit is {exc.description}; try again later"
        if _wants_json():
            body = {"error": {"code": names.get(code, "http_error"), "message": message}}
            return jsonify(body), code
        return render_template("error.html", code=code, message=message), code


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL and a busy timeout let the threaded server write from several threads; a process
    killed mid-write leaves the database intact (the last committed transaction survives)."""
    module = type(dbapi_connection).__module__
    if module.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
