"""Where a browser page's main thread spends the UI echo: a V8 CPU profile of each page taken
through the Chrome DevTools Protocol (`Profiler.start` / `Profiler.stop`) while bench/browser.py
runs the echo, saved as `.cpuprofile` (open it in Chromium's DevTools, Performance panel) and
summarised by self time. `(program)` is the main thread's native work outside JavaScript (style,
layout, paint, IPC, IndexedDB and WebRTC glue), `(idle)` is the thread waiting."""

from __future__ import annotations

import json
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
