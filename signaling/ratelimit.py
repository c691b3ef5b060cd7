"""Per-user rate limits for Socket.IO events (HTTP routes use Flask-Limiter).

Both sit on the `limits` package; with `REDIS_URL` set the counters live in Redis, so a user
cannot multiply their allowance by spreading over several server processes."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import current_app, request
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.datastructures import MultiDict

log = logging.getLogger("gibberish.ratelimit")

# After a Redis failure the counters stay in memory this long before Redis is tried again, so
# an outage costs one failed round trip per interval rather than one per event.
RETRY_SHARED_AFTER = 5.0


class EventLimits:
    """Named limits ("signal", "publish", …), each a string such as "200 per 10 seconds".

    With a Redis storage URI the counters are shared by every server process; while Redis is
    unreachable they fall back to this process's memory, so events keep flowing (limited per
    process) instead of failing."""

    def __init__(self, storage_uri: str, prefix: str, limits: dict[str, str]) -> None:
        self._shared: MovingWindowRateLimiter | None = None
        if not storage_uri.startswith("memory://"):
            self._shared = MovingWindowRateLimiter(storage_from_string(
                storage_uri, key_prefix=f"{prefix}-events", wrap_exceptions=True,
                socket_connect_timeout=1, socket_timeout=1))
        self._local = MovingWindowRateLimiter(storage_from_string("memory://"))
        self._shared_down_until = 0.0
        self._items: dict[str, RateLimitItem] = {k: parse(v) for k, v in limits.items()}

    def allow(self, name: str, who: str, cost: int = 1) -> bool:
        """Count `cost` hits of `name` for `who`; False when that would pass the limit."""
        item = self._items[name]
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return bool(self._shared.hit(item, name, who, cost=cost))
            except StorageError as exc:
                self._shared_down_until = time.monotonic() + RETRY_SHARED_AFTER
                log.warning("rate-limit storage unreachable, counting in memory for %.0f s: %s",
                            RETRY_SHARED_AFTER, exc)
        return bool(self._local.hit(item, name, who, cost=cost))

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
