"""One child process of the launcher: started from the repository root with its stderr in a log
file, read up to the lines that announce its addresses, and stopped by pid (SIGTERM, then
SIGKILL after a deadline). A `Child` can also be killed (-9), frozen (SIGSTOP), thawed
(SIGCONT) and started again in place.

Every child started is tracked until it is stopped, killed or reaped: whatever is still running
when this process exits (atexit, or a SIGTERM this process has no handler of its own for) is
stopped by pid, so that a test worker that ends mid-test leaves no server or agent behind."""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A restart that fails is tried again, after a pause, for a few seconds: the ports it reuses may
# still be held for a moment by its killed self. Longer, something else holds them.
RESTART_RETRY_SECONDS = 5.0
RESTART_BACKOFF_SECONDS = 0.5


# Children started and not yet stopped, by pid (see `track`).
_TRACKED: dict[int, subprocess.Popen[str]] = {}
_TRACKED_LOCK = threading.RLock()  # re-entered by the SIGTERM handler
_EXIT_HOOKS_INSTALLED = False
LEFTOVER_STOP_SECONDS = 5.0


def track(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Have `proc` stopped when this process exits, unless it was stopped before (stop_pid,
    kill_pid, stop_all); returns it. For every child process a test or the demo starts."""
    global _EXIT_HOOKS_INSTALLED
    with _TRACKED_LOCK:
        for pid in [pid for pid, p in _TRACKED.items() if p.returncode is not None]:
            _TRACKED.pop(pid, None)
        _TRACKED[proc.pid] = proc
        install = not _EXIT_HOOKS_INSTALLED
        _EXIT_HOOKS_INSTALLED = True
    if install:
        atexit.register(stop_leftovers)
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            signal.signal(signal.SIGTERM, _stop_leftovers_and_die)
    return proc


def _forget(proc: subprocess.Popen[str]) -> None:
    with _TRACKED_LOCK:
        if _TRACKED.get(proc.pid) is proc:
            del _TRACKED[proc.pid]


def stop_leftovers(timeout: float = LEFTOVER_STOP_SECONDS) -> list[int]:
    """Stop every tracked child still running: SIGCONT and SIGTERM to each at once, SIGKILL
    to those still there when the deadline passes. Returns their pids."""
    with _TRACKED_LOCK:
        procs = list(_TRACKED.values())
        _TRACKED.clear()
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return [p.pid for p in running]


def _stop_leftovers_and_die(signum: int, frame: object) -> None:
    """SIGTERM with no handler of the program's own: stop the children, then end as SIGTERM
    would have."""
    stop_leftovers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class ChildError(RuntimeError):
    """A child did not start as expected; the message says which and why."""


def wait_for_lines(proc: subprocess.Popen[str], markers: tuple[str, ...],
                   timeout: float) -> list[str]:
    """Read the child's stdout up to a line containing each marker, in this order, within
    `timeout` seconds; return each such line's last word without a trailing slash (the address
    it announces). Reads the pipe's descriptor itself: a buffered readline could swallow the
    next line, which `select` would then never see."""
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
                     f"{timeout:g} s")


def stop_pid(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Stop a child by pid: SIGCONT (in case it is frozen) and SIGTERM, then SIGKILL if it has
    not exited after `timeout` seconds; its pipe is closed."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    _forget(proc)
    _close(proc)


def kill_pid(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """kill -9, as a crash, and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    _forget(proc)
    _close(proc)


def _close(proc: subprocess.Popen[str]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()


def last_line(path: Path) -> str:
    """The last non-empty line of a log, to say why a child did not start."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError as exc:
        return f"(unreadable: {exc})"
    return lines[-1].strip() if lines else "(nothing)"


class Child:
    """A `python -m <module>` child: `args()` says how to run it, `markers` which stdout lines
    announce that it is ready, `started(words)` takes in what they announced."""

    markers: tuple[str, ...] = ()

    def __init__(self, log_path: Path, env: dict[str, str], ready_timeout: float = 60.0) -> None:
        self.log_path = log_path
        self.env = env
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.frozen = False
        self.starts = 0

    def args(self) -> list[str]:
        raise NotImplementedError

    def command(self) -> list[str]:
        """The whole command line: `python <args>` unless a subclass wraps it (in a network
        namespace, say)."""
        return [sys.executable, *self.args()]

    def started(self, words: list[str]) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None, "never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        """The process exists (it may be frozen)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def up(self) -> bool:
        """The process exists and is not frozen."""
        return self.running and not self.frozen

    def launch(self) -> subprocess.Popen[str]:
        """Start the process without waiting for it (see `ready`)."""
        assert not self.running, f"{self.log_path.stem} is running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log_file:
            self.proc = track(subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env,
                stdout=subprocess.PIPE, stderr=log_file, text=True))
        self.frozen = False
        return self.proc

    def ready(self, timeout: float | None = None) -> None:
        """Wait until it printed its address lines, then take them in; if it does not, stop
        it and raise ChildError quoting the end of its log."""
        assert self.proc is not None
        try:
            words = wait_for_lines(self.proc, self.markers, timeout or self.ready_timeout)
        except ChildError as exc:
            stop_pid(self.proc)
            raise ChildError(f"{exc}; {self.log_path} ends with: {last_line(self.log_path)}"
                             ) from None
        self.starts += 1
        self.started(words)

    def start(self, timeout: float | None = None) -> None:
        """Launch and wait until ready within `timeout` (default: `ready_timeout`). A restart
        that fails is tried again for a few seconds: its ports may still be held for a moment
        by its killed self."""
        now = time.monotonic()
        deadline = now + (timeout or self.ready_timeout)
        retry_until = min(deadline, now + RESTART_RETRY_SECONDS) if self.starts else now
        while True:
            self.launch()
            try:
                self.ready(max(1.0, deadline - time.monotonic()))
                return
            except ChildError:
                if time.monotonic() >= retry_until:
                    raise
            time.sleep(RESTART_BACKOFF_SECONDS)  # a back-off between attempts

    def restart(self, timeout: float | None = None) -> None:
        """Stop it (if running) and start it again in place: same data, same ports."""
        self.stop()
        self.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (after SIGCONT if frozen), then SIGKILL if it has not exited in time."""
        if self.proc is not None:
            stop_pid(self.proc, timeout)
        self.frozen = False

    def kill(self) -> None:
        """kill -9, as a crash: no goodbye to anyone."""
        assert self.proc is not None, "never started"
        kill_pid(self.proc)
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP: the process stays, with its sockets open, and answers nothing."""
        assert self.up, "not running, or already frozen"
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        assert self.running and self.frozen, "not frozen"
        os.kill(self.pid, signal.SIGCONT)
        self.frozen = False

    def log(self) -> str:
        """Everything it wrote to its log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_all(children: Sequence[Child], timeout: float = 10.0) -> None:
    """Stop every child still running, the last given first: SIGTERM to each at once, then
    SIGKILL to those still there when the shared deadline passes."""
    procs = [c.proc for c in reversed(children) if c.proc is not None]
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        _forget(proc)
        _close(proc)
    for child in children:
        child.frozen = False


def start_all(children: Sequence[Child], timeout: float | None = None) -> None:
    """Start several children side by side: launch each, then wait until each is ready (their
    imports and start-ups overlap). Those started are left running if one fails: the caller
    stops them as it stops any child."""
    for child in children:
        child.launch()
    for child in children:
        child.ready(timeout)
