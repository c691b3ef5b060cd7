"""The guided fault demo (`python -m demo --faults`) in a subprocess, for the tests
that run it: its output collected line by line, Enter pressed for `--step`, and every process
it started found and stopped by pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from launcher import track
from tests.helpers import ROOT

STEPS = 7
PROMPT = "-- press Enter for the next step --"


class Demo:
    """The demo in a subprocess; a thread collects its output line by line."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.proc = track(subprocess.Popen(
            [sys.executable, "-m", "demo", "--faults", "--port", "0",
             "--data-dir", str(data_dir), *extra],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        self.lines: list[str] = []
        self._read = 0  # lines already matched by `wait_for`
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The next line (after the last one matched) that matches `pattern`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(self._read, len(self.lines)):
                    found = re.search(pattern, self.lines[index])
                    if found:
                        self._read = index + 1
                        return found
                self._read = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"the demo never printed {pattern!r}:\n{self.output()}")
                self._changed.wait(min(left, 1.0))

    def enter(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """By pid: SIGTERM (the demo then stops its children), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in leftovers(self):  # only if the demo itself failed to stop them
            os.kill(pid, signal.SIGKILL)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._reader.join(timeout=10)

    def output(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> set[int]:
        """Every child the demo said it started (server, agents, restarts)."""
        return {int(p) for p in re.findall(r"\(pid (\d+)", self.output())}


def leftovers(demo: Demo) -> list[int]:
    """Processes still running that the demo started: a pid it printed that is still a server
    or an agent, or any process with the demo's data dir on its command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        ours = int(entry.name) in demo.pids() and ("-m signaling" in cmdline
                                                   or "-m peer_agent" in cmdline)
        if ours or str(demo.data_dir) in cmdline:
            found.append(int(entry.name))
    return found
