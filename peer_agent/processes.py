"""Child processes of the demos: started with their stderr in a log file, read up to the line
that carries their address, and stopped by pid (SIGTERM, then SIGKILL after a deadline)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ChildError(RuntimeError):
    """A child did not start as expected; the message says which and why."""


def wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """Read the child's stdout up to a line containing `marker`, within `timeout` seconds, and
    return that line's last word without a trailing slash (the address it announces)."""
    return wait_for_lines(proc, (marker,), timeout)[0]


def wait_for_lines(proc: subprocess.Popen[str], markers: tuple[str, ...],
                   timeout: float = 60) -> list[str]:
    """`wait_for_line` for several lines, in this order. Reads the pipe's descriptor itself:
    a buffered readline could swallow the next line, which `select` would then never see."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    found: list[str] = []
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ChildError(f"process {proc.pid} exited before printing "
                                 f"{markers[len(found)]!r}")
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if markers[len(found)] in (text := line.decode(errors="replace")):
                    found.append(text.strip().rsplit(" ", 1)[-1].rstrip("/"))
                    if len(found) == len(markers):
                        return found
    raise ChildError(f"process {proc.pid} did not print {markers[len(found)]!r} within "
                     f"{timeout:.0f} s")


class Children:
    """Every process a demo starts, so that all of them can be stopped by pid at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], log: Path, extra_env: dict[str, str] | None = None,
              ) -> subprocess.Popen[str]:
        """`python <args>` from the repository root; stdout is piped (read it with
        `wait_for_line`), stderr appended to `log`."""
        with open(log, "a") as log_file:
            proc = subprocess.Popen([sys.executable, *args], cwd=ROOT,
                                    env={**self.env, **(extra_env or {})},
                                    stdout=subprocess.PIPE, stderr=log_file, text=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[str], timeout: float = 30) -> None:
        """kill -9, as a crash, and reap it."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        _close(proc)

    def stop(self, proc: subprocess.Popen[str], timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        self.stop_all(timeout, [proc])

    def stop_all(self, timeout: float = 10,
                 procs: list[subprocess.Popen[str]] | None = None) -> None:
        """Stop every child still running, the last started first: SIGTERM to each, then
        SIGKILL to those still there when the shared deadline passes."""
        procs = list(reversed(self.procs if procs is None else procs))
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            _close(proc)


def _close(proc: subprocess.Popen[str]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
