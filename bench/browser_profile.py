"""Where a browser page's main thread spends the UI echo: a V8 CPU profile of each page taken
through the Chrome DevTools Protocol (`Profiler.start` / `Profiler.stop`) while bench/browser.py
runs the echo, saved as `.cpuprofile` (open it in Chromium's DevTools, Performance panel) and
summarised by self time. `(program)` is the main thread's native work outside JavaScript (style,
layout, paint, IPC, IndexedDB and WebRTC glue), `(idle)` is the thread waiting."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from playwright.sync_api import CDPSession, Page

SAMPLING_US = 100


class PageProfiler:
    """A CPU profile of one page, from start() to stop()."""

    def __init__(self, page: Page) -> None:
        self.session: CDPSession = page.context.new_cdp_session(page)

    def start(self) -> None:
        self.session.send("Profiler.enable")
        self.session.send("Profiler.setSamplingInterval", {"interval": SAMPLING_US})
        self.session.send("Profiler.start")

    def stop(self, path: Path) -> dict[str, Any]:
        profile: dict[str, Any] = self.session.send("Profiler.stop")["profile"]
        self.session.send("Profiler.disable")
        self.session.detach()
        path.write_text(json.dumps(profile))
        return profile


def self_times(profile: dict[str, Any]) -> dict[str, float]:
    """Self time per function (ms), a function named `name (file:line)`."""
    names = {}
    for node in profile["nodes"]:
        frame = node["callFrame"]
        name = frame["functionName"] or "(anonymous)"
        if frame.get("url"):
            name += f" ({frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber'] + 1})"
        names[node["id"]] = name
    totals: dict[str, float] = defaultdict(float)
    samples, deltas = profile.get("samples", []), profile.get("timeDeltas", [])
    # Each delta is the time before its sample: the time of sample i is delta i + 1.
    for i, node in enumerate(samples):
        if i + 1 < len(deltas):
            totals[names[node]] += deltas[i + 1] / 1000
    return dict(totals)


def summary(profiles: list[dict[str, Any]], echoes: int, top: int = 14) -> list[str]:
    """A markdown table: the main threads' busy share and the functions with the most self
    time, per echo, over all the pages profiled."""
    totals: dict[str, float] = defaultdict(float)
    for profile in profiles:
        for name, ms in self_times(profile).items():
            totals[name] += ms
    wall = sum(totals.values()) or 1.0
    idle = totals.get("(idle)", 0.0)
    files: dict[str, float] = defaultdict(float)
    for name, ms in totals.items():
        if name.endswith(")") and ".js:" in name:
            files[name.rsplit("(", 1)[1].split(":")[0]] += ms
    lines = [
        f"Main threads of the {len(profiles)} pages over {echoes} echoes: busy "
        f"{100 * (1 - idle / wall):.0f}% of the wall time ({(wall - idle) / echoes:.1f} ms of "
        "main-thread work per echo, both pages together). JavaScript by file, ms per echo: "
        + ", ".join(f"{f} {ms / echoes:.2f}" for f, ms in
                    sorted(files.items(), key=lambda kv: -kv[1])[:8]) + ".",
        "",
        "| self time, both pages | ms per echo | share of busy time |",
        "|---|---|---|",
    ]
    busy = (wall - idle) or 1.0
    for name, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        if name == "(idle)":
            continue
        lines.append(f"| `{name}` | {ms / echoes:.2f} | {100 * ms / busy:.0f}% |")
        if len(lines) >= top + 4:
            break
    return lines


def descendants_cpu() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process's descendants, by kind:
    "chromium" (every process of the browser), "chromium: <process type>" and "other" (the
    server, Playwright's driver).
    Unlike wall time, it hardly moves with the machine's load."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu, kind = {}, {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        kind[pid] = chromium_kind(pid) if "chrom" in name.lower() else "other"
    me = os.getpid()
    totals: dict[str, float] = defaultdict(float)
    for pid in cpu:
        up = parent.get(pid)
        while up and up != me:
            up = parent.get(up)
        if up == me:
            totals[kind[pid]] += cpu[pid]
            if kind[pid] != "other":
                totals["chromium"] += cpu[pid]
            if kind[pid] == "chromium: renderer":
                for thread, seconds in thread_cpu(pid, tick).items():
                    totals[f"renderer thread: {thread}"] += seconds
    return dict(totals)


def thread_cpu(pid: int, tick: int) -> dict[str, float]:
    """CPU seconds of a process's threads, by thread name (numbers stripped)."""
    out: dict[str, float] = defaultdict(float)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = re.sub(r"[0-9]+$", "", stat[stat.index("(") + 1:stat.rindex(")")]).rstrip()
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] += (int(fields[11]) + int(fields[12])) / tick
    return out


def chromium_kind(pid: int) -> str:
    """"chromium: <its --type>" (renderer, gpu-process, utility…), "chromium: browser"."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            # Chromium rewrites a child's command line in place (spaces, not NULs).
            line = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "chromium: ?"
    kind = re.search(r"--type=(\S+)", line)
    if not kind:
        return "chromium: browser"
    sub = re.search(r"--utility-sub-type=(\S+)", line)
    return "chromium: " + (sub.group(1).rsplit(".", 1)[-1] if sub else kind.group(1))
