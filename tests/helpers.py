"""Helpers shared by the test suites: free ports, polling with a deadline, process control."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

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
    """Stop a child by pid: SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
