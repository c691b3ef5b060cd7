"""Password hashing cost: argon2's default unless configured, a clear error for a bad setting,
and passwords hashed at one cost still sign in at another (and are rehashed at the new one).

The rest of the suite runs at the least cost (tests/conftest.py); the server here runs at the
default, as a deployment does."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from argon2 import profiles

from signaling.passwords import PasswordCostError, Passwords, hasher_from
from tests.helpers import stop_process
from tests.signaling.conftest import PASSWORD, database_engine, start_server, unique_name

DEFAULT_COST = {"ARGON2_TIME_COST": "", "ARGON2_MEMORY_KIB": "", "ARGON2_PARALLELISM": ""}
DEFAULT_PREFIX = "$argon2id$v=19$m=65536,t=3,p=4$"


def test_unset_or_empty_settings_give_argon2s_own_default() -> None:
    for env in ({}, DEFAULT_COST):
        hasher = hasher_from(env)
        default = profiles.RFC_9106_LOW_MEMORY
        assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (
            default.time_cost, default.memory_cost, default.parallelism)


def test_a_configured_cost_is_used_and_recorded_in_each_hash() -> None:
    passwords = Passwords(hasher_from(
        {"ARGON2_TIME_COST": "2", "ARGON2_MEMORY_KIB": "2048", "ARGON2_PARALLELISM": "2"}))
    stored = passwords.hash("a long enough password")
    assert stored.startswith("$argon2id$v=19$m=2048,t=2,p=2$")
    assert passwords.matches(stored, "a long enough password")
    assert not passwords.matches(stored, "another password")
    assert not passwords.matches(None, "a long enough password")


@pytest.mark.parametrize(("env", "named"), [
    ({"ARGON2_TIME_COST": "three"}, "ARGON2_TIME_COST"),
    ({"ARGON2_TIME_COST": "0"}, "ARGON2_TIME_COST"),
    ({"ARGON2_PARALLELISM": "-1"}, "ARGON2_PARALLELISM"),
    ({"ARGON2_MEMORY_KIB": "7", "ARGON2_PARALLELISM": "1"}, "ARGON2_MEMORY_KIB"),
    ({"ARGON2_MEMORY_KIB": "16", "ARGON2_PARALLELISM": "4"}, "ARGON2_MEMORY_KIB"),
])
def test_a_setting_that_cannot_be_used_is_refused_naming_it(env: dict[str, str],
                                                             named: str) -> None:
    with pytest.raises(PasswordCostError, match=named):
        hasher_from(env)


def stored_hash(database_url: str, username: str) -> str:
    engine = database_engine(database_url)
    try:
        with engine.connect() as conn:
            value: str = conn.execute(
                sa.text("SELECT password_hash FROM users WHERE username = :u"),
                {"u": username}).scalar_one()
            return value
    finally:
        engine.dispose()


def test_a_server_hashes_at_the_default_cost_and_upgrades_cheaper_hashes(tmp_path: Path) -> None:
    """A password made at the suite's least cost signs in on a server at the default cost,
    which then stores it rehashed at the default; new accounts get the default."""
    cheap = start_server(tmp_path)
    try:
        old = unique_name("old")
        made = requests.post(f"{cheap.url}/api/register",
                             json={"username": old, "password": PASSWORD}, timeout=10)
        assert made.status_code == 201, made.text
        assert "below the default cost" in cheap.log()
    finally:
        stop_process(cheap.proc)
    assert stored_hash(cheap.database_url, old).startswith("$argon2id$v=19$m=1024,t=1,p=1$")

    server = start_server(tmp_path / "default", DEFAULT_COST, database_url=cheap.database_url)
    try:
        login = requests.post(f"{server.url}/api/login",
                              json={"username": old, "password": PASSWORD}, timeout=10)
        assert login.status_code == 200, login.text
        assert stored_hash(server.database_url, old).startswith(DEFAULT_PREFIX)
        new = unique_name("new")
        made = requests.post(f"{server.url}/api/register",
                             json={"username": new, "password": PASSWORD}, timeout=10)
        assert made.status_code == 201, made.text
        assert stored_hash(server.database_url, new).startswith(DEFAULT_PREFIX)
        wrong = requests.post(f"{server.url}/api/login",
                              json={"username": new, "password": PASSWORD + "!"}, timeout=10)
        assert wrong.status_code == 401
        assert "below the default cost" not in server.log()
    finally:
        stop_process(server.proc)
