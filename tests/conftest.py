"""Suite-wide options: `--soak` (or GIBBERISH_SOAK=1) also runs the long runs marked `slow`.

Every server the suite starts inherits this environment. Password hashing runs at argon2's
least cost here (about 1 ms instead of a quarter of a CPU second per sign-in): the suite signs
in thousands of times and tests nothing about the cost, which tests/signaling/test_passwords.py
checks on a server of its own at the default."""

from __future__ import annotations

import os

import pytest

TEST_PASSWORD_COST = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024",
                      "ARGON2_PARALLELISM": "1"}
for _name, _value in TEST_PASSWORD_COST.items():
    os.environ.setdefault(_name, _value)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the long runs marked slow (the fault soak); "
                          "GIBBERISH_SOAK=1 does the same")


def soak_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--soak")) or os.environ.get("GIBBERISH_SOAK") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if soak_enabled(config):
        return
    skip = pytest.mark.skip(reason="a long run: pass --soak (or GIBBERISH_SOAK=1) to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
