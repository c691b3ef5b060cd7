"""Server configuration read from the environment, with defaults that are safe on one machine."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .passwords import PasswordCostError, hasher_from
from .turn import DEFAULT_TURN_TTL, TurnSettings

DEFAULT_RATE_LIMITS = {
    "RATELIMIT_LOGIN": "10 per minute",
    "RATELIMIT_LOGIN_ADDRESS": "100 per minute",
    "RATELIMIT_REGISTER": "5 per minute",
    "RATELIMIT_SIGNAL": "200 per 10 seconds",
    "RATELIMIT_PUBLISH": "2000 per 10 seconds",
    "RATELIMIT_JOIN": "30 per minute",
    "RATELIMIT_JOIN_ROOM": "30 per minute",
    "RATELIMIT_JOIN_ROOMS": "600 per minute",
}


DEFAULT_REDIS_PREFIX = "gibberish"
DEFAULT_HEARTBEAT_SECONDS = 5.0
DEFAULT_POOL_SIZE = 10


class ConfigError(ValueError):
    """A setting in the environment cannot be used; the message names the variable."""


def normalize_database_url(url: str) -> str:
    """Accept the `postgres://` spelling some PaaS hand out and select the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def engine_options(url: str, pool_size: int) -> dict[str, Any]:
    """SQLAlchemy engine options: every pooled PostgreSQL connection is checked before use
    (`pool_pre_ping`), so connections dropped by a database restart or by
    `pg_terminate_backend` are replaced instead of failing a request, and gives up after 5 s
    instead of hanging on an unreachable host. A SQLite file has no server to drop a
    connection: its ping was an eighth of the development server's time in a burst of page
    loads, for nothing."""
    if not url.startswith("postgresql"):
        return {}
    return {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": pool_size,
            "connect_args": {"connect_timeout": 5}}


def positive_number(name: str, raw: str | None, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def check_redis_url(url: str | None) -> str | None:
    """`REDIS_URL` must name a Redis server (`redis://`, `rediss://` or `unix://`): any other
    scheme would make Flask-SocketIO look for a different queue library."""
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return url


def parse_ice_servers(raw: str | None) -> list[dict[str, Any]]:
    """Parse `ICE_SERVERS` (a JSON list of RTCIceServer dicts). The default is no server at all:
    a public STUN default would send packets off this machine."""
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"ICE_SERVERS is not valid JSON: {exc}") from exc
    if not isinstance(value, list):
        raise ConfigError("ICE_SERVERS must be a JSON list of {urls, username?, credential?}")
    for server in value:
        if not isinstance(server, dict) or "urls" not in server:
            raise ConfigError("each ICE_SERVERS entry needs a 'urls' field")
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        if not all(isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns")
                   for u in urls):
            raise ConfigError("ICE_SERVERS urls must start with stun:, turn: or turns:")
    return value


def parse_turn_settings(urls: str | None, secret: str | None,
                        ttl: str | None) -> TurnSettings | None:
    """`TURN_URLS` (comma-separated `turn:`/`turns:` URLs), `TURN_SECRET` (shared with the TURN
    server's `static-auth-secret`) and `TURN_TTL` (seconds each minted credential lives): both of
    the first two or neither."""
    if not urls and not secret:
        return None
    if not urls or not secret:
        raise ConfigError("TURN_URLS and TURN_SECRET go together: set both or neither")
    listed = tuple(u.strip() for u in urls.split(",") if u.strip())
    if not listed or not all(u.split(":", 1)[0] in ("turn", "turns") for u in listed):
        raise ConfigError("TURN_URLS must be a comma-separated list of turn: or turns: URLs")
    lifetime = positive_number("TURN_TTL", ttl, DEFAULT_TURN_TTL)
    if lifetime < 60 or lifetime != int(lifetime):
        raise ConfigError("TURN_TTL must be a whole number of seconds, 60 or more")
    return TurnSettings(urls=listed, secret=secret, ttl=int(lifetime))


def parse_cors_origins(raw: str | None) -> list[str] | str | None:
    """`CORS_ORIGINS`: unset means same origin only, `*` means any, else a comma-separated list."""
    if not raw:
        return None
    if raw.strip() == "*":
        return "*"
    return [o.strip() for o in raw.split(",") if o.strip()]


def instance_secret_key(instance_path: str) -> str:
    """A development secret kept in the instance folder (mode 0600), so tokens survive restarts
    without anyone configuring `SECRET_KEY`. Production sets `SECRET_KEY` instead."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def from_environment(instance_path: str) -> dict[str, Any]:
    """Build the app configuration from environment variables."""
    env = os.environ
    db_default = "sqlite:///" + str(Path(instance_path) / "gibberish.sqlite3")
    database_url = normalize_database_url(env.get("DATABASE_URL") or db_default)
    pool_size = int(positive_number("DATABASE_POOL_SIZE", env.get("DATABASE_POOL_SIZE"),
                                    DEFAULT_POOL_SIZE))
    config: dict[str, Any] = {
        "SECRET_KEY": env.get("SECRET_KEY") or instance_secret_key(instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "DATABASE_POOL_SIZE": pool_size,
        "REDIS_URL": check_redis_url(env.get("REDIS_URL")),
        "REDIS_PREFIX": env.get("REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
        "PRESENCE_HEARTBEAT_SECONDS": positive_number(
            "PRESENCE_HEARTBEAT_SECONDS", env.get("PRESENCE_HEARTBEAT_SECONDS"),
            DEFAULT_HEARTBEAT_SECONDS),
        "ICE_SERVERS": parse_ice_servers(env.get("ICE_SERVERS")),
        "TURN": parse_turn_settings(env.get("TURN_URLS"), env.get("TURN_SECRET"),
                                    env.get("TURN_TTL")),
        "CORS_ORIGINS": parse_cors_origins(env.get("CORS_ORIGINS")),
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "0") == "1",
    }
    try:
        config["PASSWORD_HASHER"] = hasher_from(env)
    except PasswordCostError as exc:
        raise ConfigError(str(exc)) from None
    for name, default in DEFAULT_RATE_LIMITS.items():
        config[name] = env.get(name, default)
    return config
