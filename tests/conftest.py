"""Suite-wide options: `--soak` (or GIBBERISH_SOAK=1) also runs the long runs marked `slow`."""

from __future__ import annotations

import os

import pytest


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
