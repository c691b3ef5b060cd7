"""Per-user rate limits for Socket.IO events (HTTP routes use Flask-Limiter).

Both sit on the `limits` package; with `REDIS_URL` set the counters live in Redis, so a user
cannot multiply their allowance by spreading over several server processes."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.datastructures import MultiDict


class EventLimits:
    """Named limits ("signal", "publish", …), each a string such as "200 per 10 seconds"."""

    def __init__(self, storage_uri: str, limits: dict[str, str]) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._items: dict[str, RateLimitItem] = {k: parse(v) for k, v in limits.items()}

    def allow(self, name: str, who: str, cost: int = 1) -> bool:
        """Count `cost` hits of `name` for `who`; False when that would pass the limit."""
        return bool(self._limiter.hit(self._items[name], name, who, cost=cost))

    def describe(self, name: str) -> str:
        item = self._items[name]
        return f"{item.amount} per {item.multiples} {item.GRANULARITY.name}"


def sign_in_key() -> str:
    """Flask-Limiter key for one name tried from one address (JSON or form sign-in)."""
    data: Any = request.get_json(silent=True) if request.is_json else request.form
    name = data.get("username") if isinstance(data, dict | MultiDict) else None
    return f"{request.remote_addr}|{name if isinstance(name, str) else ''}"[:200]


def sign_in_per_name() -> str:
    return str(current_app.config["RATELIMIT_LOGIN"])


def sign_in_per_address() -> str:
    return str(current_app.config["RATELIMIT_LOGIN_ADDRESS"])
