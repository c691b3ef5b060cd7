"""Helpers shared by the test suites: free ports, polling with a deadline, process control."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import pytest

from launcher.child import stop_pid

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def poll(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
         message: str = "condition") -> T:
    """Return the first truthy value of `predicate()`, or fail once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def read_line_matching(proc: subprocess.Popen[str], marker: str, timeout: float,
                       stream: IO[str] | None = None) -> str:
    """Read the child's stdout (or `stream`) until a line containing `marker`, within
    `timeout` seconds."""
    stream = stream or proc.stdout
    assert stream is not None
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = stream.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                return line
    finally:
        sel.close()
    raise AssertionError(f"process {proc.pid} never printed {marker!r}; it printed {seen!r}")


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Stop a child by pid (the launcher's rule: SIGCONT, SIGTERM, then SIGKILL if it does
    not exit in time) and close its pipes."""
    stop_pid(proc, timeout)
    if proc.stderr is not None:
        proc.stderr.close()


def require(reason: str | None, needs: str) -> None:
    """Go on when `reason` is None; else skip the test saying what it needs and why it is
    missing, or fail in CI, where a missing prerequisite is a broken machine."""
    if reason is None:
        return
    message = f"{needs}: {reason}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
