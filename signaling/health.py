"""`/healthz`: whether this process can reach what it depends on."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db, rollback_quietly, socketio

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        rollback_quietly()
        current_app.logger.warning("healthz: database unreachable: %s", exc)
        checks["database"] = "unreachable"
    if current_app.config.get("REDIS_URL"):
        checks["redis"] = _redis_status(current_app.config["REDIS_URL"])
    down = sorted(name for name, state in checks.items() if state != "ok")
    body = {
        "status": "ok" if not down else "degraded", "checks": checks, "down": down,
        "async_mode": socketio.async_mode,
    }
    return jsonify(body), (200 if not down else 503)


def _redis_status(url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return "ok"
    except redis.RedisError as exc:
        current_app.logger.warning("healthz: redis unreachable: %s", exc)
        return "unreachable"
