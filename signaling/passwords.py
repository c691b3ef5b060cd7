"""Password hashing (argon2id), at a cost set by configuration.

The default is argon2-cffi's own, RFC 9106's low-memory profile (t=3, 64 MiB, p=4): about a
quarter of a CPU second per hash. `ARGON2_TIME_COST`, `ARGON2_MEMORY_KIB` and
`ARGON2_PARALLELISM` change it; the test suite lowers it, because it signs in thousands of
times and tests nothing about the cost. A hash records its own parameters, so hashes made at
one cost still verify at another, and a sign-in rehashes a password made at a different cost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger("gibberish.passwords")

DEFAULT = profiles.RFC_9106_LOW_MEMORY
SETTINGS = ("ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM")


class PasswordCostError(ValueError):
    """An ARGON2_* setting cannot be used; the message names the variable."""


def _whole(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PasswordCostError(f"{name} must be a whole number, not {raw!r}") from None
    if value < low:
        raise PasswordCostError(f"{name} must be {low} or more")
    return value


def hasher_from(env: Mapping[str, str]) -> PasswordHasher:
    """The argon2id hasher the ARGON2_* settings in `env` ask for (unset or empty: the
    default); a cost below the default is logged, since it belongs in tests only."""
    time_cost = _whole(env, "ARGON2_TIME_COST", DEFAULT.time_cost, 1)
    parallelism = _whole(env, "ARGON2_PARALLELISM", DEFAULT.parallelism, 1)
    memory = _whole(env, "ARGON2_MEMORY_KIB", DEFAULT.memory_cost, 8 * parallelism)
    if time_cost < DEFAULT.time_cost or memory < DEFAULT.memory_cost:
        log.warning("password hashing below the default cost (t=%d, m=%d KiB, p=%d): "
                    "fine for tests, weak for real accounts", time_cost, memory, parallelism)
    return PasswordHasher(time_cost=time_cost, memory_cost=memory, parallelism=parallelism,
                          hash_len=DEFAULT.hash_len, salt_len=DEFAULT.salt_len)


class Passwords:
    """Hashes and checks passwords with one hasher; a missing user costs a full check too."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher
        # Verified against when the user does not exist, so a wrong user name costs as much
        # time as a wrong password and does not reveal which names are taken.
        self._dummy = hasher.hash("not a real password")

    def hash(self, password: str) -> str:
        return str(self.hasher.hash(password))

    def matches(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches the stored hash (None: no such user, always False)."""
        try:
            self.hasher.verify(stored if stored is not None else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return bool(self.hasher.check_needs_rehash(stored))
