"""Configuration read from the environment: database URLs as a PaaS hands them out, the
connection pool, Redis and the presence heartbeat."""

from __future__ import annotations

import pytest

from signaling.config import (
    ConfigError,
    check_redis_url,
    engine_options,
    normalize_database_url,
    positive_number,
)


def test_a_postgres_url_as_a_paas_hands_it_out_selects_psycopg_3() -> None:
    assert normalize_database_url("postgres://u:p@db.example:5432/chat?sslmode=require") == (
        "postgresql+psycopg://u:p@db.example:5432/chat?sslmode=require")


def test_a_postgresql_url_without_a_driver_selects_psycopg_3() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_a_url_naming_its_driver_or_sqlite_is_left_alone() -> None:
    for url in ("postgresql+psycopg://u@h/db", "sqlite:////tmp/x.sqlite3"):
        assert normalize_database_url(url) == url


def test_every_pooled_postgresql_connection_is_checked_before_use_not_sqlites() -> None:
    """A database server can drop a pooled connection; a SQLite file cannot, and pinging it
    before every use cost the server an eighth of its time in a burst of page loads."""
    assert engine_options("postgresql+psycopg://u@h/db", 10)["pool_pre_ping"] is True
    assert "pool_pre_ping" not in engine_options("sqlite:////tmp/x.sqlite3", 10)


def test_postgresql_pool_follows_database_pool_size_and_connecting_gives_up() -> None:
    options = engine_options("postgresql+psycopg://u@h/db", 7)
    assert (options["pool_size"], options["max_overflow"]) == (7, 7)
    assert options["connect_args"] == {"connect_timeout": 5}


def test_a_redis_url_of_another_scheme_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        check_redis_url("amqp://localhost")
    assert check_redis_url("rediss://h:6380/0") == "rediss://h:6380/0"
    assert check_redis_url("") is None


def test_the_heartbeat_must_be_a_positive_number() -> None:
    assert positive_number("PRESENCE_HEARTBEAT_SECONDS", "0.5", 5.0) == 0.5
    assert positive_number("PRESENCE_HEARTBEAT_SECONDS", None, 5.0) == 5.0
    for raw in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="PRESENCE_HEARTBEAT_SECONDS"):
            positive_number("PRESENCE_HEARTBEAT_SECONDS", raw, 5.0)
