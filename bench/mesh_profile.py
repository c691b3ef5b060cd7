"""A sampling profile of one agent under bench.mesh's load, by py-spy attached to its pid, and
the summary of where its CPU time goes per delivered message.

py-spy (requirements-dev.txt) samples the running process from outside, so the agent runs
unchanged; idle samples are left out, so the samples stand for CPU time."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE = 250  # samples per second
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def py_spy() -> str:
    """The py-spy executable, next to this Python or on PATH; RuntimeError if absent."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy not found: pip install -r requirements-dev.txt")
    return found


class Sampler:
    """py-spy recording one pid into collapsed stacks until `stop()`."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        """Stop sampling (SIGINT makes py-spy write its file) and wait for the file."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.strip()[-500:]}")


def _frame(text: str) -> str:
    """`function (file)`, the line number dropped so a function counts once."""
    match = FRAME.match(text.strip())
    if match is None:
        return text.strip()
    return f"{match['func']} ({match['file']})"


@dataclass
class Profile:
    """Samples per function: `own` where it was the innermost Python frame, `total` where it
    was anywhere on the stack (counted once per sample)."""

    samples: int
    own: Counter[str]
    total: Counter[str]
    areas: Counter[str]


# Innermost frames that are waits, not work: the event loop in epoll_wait and a worker thread
# waiting for its next job. py-spy's idle detection misses them when it samples with
# --nonblocking on a busy machine, and they landed in the agent's own areas (__main__ is on
# every stack); they are left out like the idle samples py-spy does recognise.
WAITS = ("EpollSelector.select (selectors.py)", "_worker (concurrent/futures/thread.py)")


def read_collapsed(path: Path) -> Profile:
    """Parse py-spy's raw output: one `frame;frame;… count` line per distinct stack, waits
    (`WAITS`) left out."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        # the first frame names the thread ("process …" / "thread …") when py-spy adds it
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames or frames[-1] in WAITS:
            continue
        samples += count
        own[frames[-1]] += count
        areas[area_of(frames)] += count
        for frame in set(frames):
            total[frame] += count
    return Profile(samples, own, total, areas)


# Where a sample's time goes: the innermost frame that matches one of these, walking outwards,
# names its area (so SQLite's C time counts for the log function that called it).
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ed25519 sign / verify", ("protocol/keys.py", "cryptography/")),
    ("JSON encode / parse (frames, canonical bytes)",
     ("json/", "protocol/strict_json.py", "protocol/frames.py", "protocol/channel.py",
      "protocol/canonical.py")),
    ("local log: SQLite writes, commits (fsync), reads", ("peer_agent/log", "sqlite3/")),
    ("records: timeline and message path journal", ("peer_agent/records.py",)),
    ("UI pushes: state / message / delivery JSON to the WebSocket",
     ("peer_agent/ui.py", "peer_agent/ui_state.py", "aiohttp/web_ws.py", "aiohttp/_websocket")),
    ("HTTP API (aiohttp server)", ("aiohttp/",)),
    ("uploads to the server (outbox, Socket.IO)",
     ("peer_agent/outbox.py", "peer_agent/signaling_client.py", "peer_agent/room_signaling.py",
      "socketio/", "engineio/")),
    ("aiortc: SCTP, DTLS (OpenSSL), ICE", ("aiortc/", "aioice/", "OpenSSL/", "pylibsrtp/")),
    ("room core and other agent code", ("peer_agent/", "protocol/")),
)
ENTRY = ("(<frozen runpy>)", "(asyncio/runners.py)", "(asyncio/events.py)",
         "(peer_agent/__main__.py)")
OURS = ("(peer_agent/", "(protocol/")


def area_of(frames: list[str]) -> str:
    """The area of one sample's stack (innermost frame last)."""
    for frame in reversed(frames):
        for area, marks in AREAS:
            if any(f"({mark}" in frame or f"/{mark}" in frame for mark in marks):
                return area
    return "asyncio event loop and the rest"


def summary_table(profile: Profile, delivered: int, cpu: float, rows: int = 12) -> list[str]:
    """Markdown tables: CPU by area, then the top functions by cumulative and by own time,
    each as a share of the samples and as µs per delivered message, scaling the samples to
    the `cpu` seconds measured over the same pass (py-spy counts a thread waiting for a core
    as busy)."""
    def us(count: int) -> str:
        return f"{count / profile.samples * cpu / delivered * 1e6:,.0f}"

    def share(count: int) -> str:
        return f"{100 * count / profile.samples:.1f}%"

    lines = ["| where the time goes | share | µs per message |", "|---|---|---|"]
    lines += [f"| {area} | {share(count)} | {us(count)} |"
              for area, count in profile.areas.most_common()]
    lines += ["", "| agent function (file) | cumulative | µs per message | own | µs per message |",
              "|---|---|---|---|---|"]
    listed = 0
    for name, count in profile.total.most_common():
        if listed >= rows:
            break
        if name.endswith(ENTRY) or not any(mark in name for mark in OURS):
            continue  # the entry point holds every sample; the libraries show in the areas
        listed += 1
        lines.append(f"| `{name}` | {share(count)} | {us(count)} | "
                     f"{share(profile.own[name])} | {us(profile.own[name])} |")
    lines += ["", "| innermost function (file) | own | µs per message |", "|---|---|---|"]
    for name, count in profile.own.most_common(rows):
        lines.append(f"| `{name}` | {share(count)} | {us(count)} |")
    return lines
