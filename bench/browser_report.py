"""The report of bench/browser.py (issue 17): its results, and the markdown section that sets
each figure beside the plain RTCDataChannel's measured in the same Chromium run."""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field

from bench.browser_mesh import MeshRace, step_table
from bench.report import machine, percentile

GOAL_ECHO_P50, GOAL_ECHO_P99 = 5.0, 15.0
GOAL_CHANNEL_AFTER_JOIN, GOAL_FIRST_AFTER_DCL, GOAL_MESH = 150.0, 250.0, 250.0


def met(ok: bool) -> str:
    return "met" if ok else "not met"


@dataclass
class EchoRun:
    """The UI echo in a room that held `size` messages before it began."""

    size: int
    samples: list[float]  # ms, back to back
    spaced: list[float] = field(default_factory=list)  # ms, each GAP after the one before
    spaced_cpu: float = 0.0  # Chromium's CPU ms per spaced echo (its gap included)
    one_way: list[float] = field(default_factory=list)  # ms, spaced: A's Enter -> in B's list
    steps: dict[str, list[float]] = field(default_factory=dict)  # page A's and B's, merged
    profile: list[str] = field(default_factory=list)  # the CPU profile's summary, if taken
    cpu: dict[str, float] = field(default_factory=dict)  # CPU ms per echo, by process kind

    def blocks(self, block: int) -> list[float]:
        return [statistics.median(self.samples[i:i + block])
                for i in range(0, len(self.samples), block)]


@dataclass
class Results:
    floor: list[float] = field(default_factory=list)  # ms, plain channel round trips
    floor_spaced: list[float] = field(default_factory=list)  # ms, the same, spaced
    floor_link: list[float] = field(default_factory=list)  # ms, one pair set up in a page
    floor_mesh: list[float] = field(default_factory=list)  # ms, six pairs at once in a page
    plain_dcl: list[float] = field(default_factory=list)  # ms, the start page's
    echoes: list[EchoRun] = field(default_factory=list)
    undrawn: EchoRun | None = None  # the short room's echo with the chat hidden: a diagnostic
    opens: list[dict[str, float]] = field(default_factory=list)
    race: MeshRace = field(default_factory=MeshRace)
    chromium: str = "Chromium"
    errors: list[str] = field(default_factory=list)


def p(samples: list[float], q: float) -> float:
    return percentile(samples, q)


def mesh_lines(r: Results, args: argparse.Namespace) -> list[str]:
    """The mesh race's table beside six plain pairs linked at once, and its step table."""
    mesh_floor = statistics.median(r.floor_mesh)
    race = r.race
    if race.from_join:
        m50 = statistics.median(race.from_join)
        mesh_line = (
            f"| {args.pages} pages, {args.tries} tries | {m50:.0f} (max {max(race.from_join):.0f})"
            f" | {statistics.median(race.from_navigation):.0f} | {mesh_floor:.1f} (6 pairs at "
            f"once inside one page) | {m50 / mesh_floor:.1f} | {race.stalls} | "
            f"≤ 250 and 0 stalls: {met(m50 <= GOAL_MESH and race.stalls == 0)} |")
    else:
        mesh_line = (f"| {args.pages} pages, {args.tries} tries | – | – | {mesh_floor:.1f} | – | "
                     f"{race.stalls} | not met |")
    mesh = ["| joining at once | full mesh after the last join, median ms | after the first "
            "navigation, median ms | plain ms | page ÷ plain | stalls (no mesh in 9 s) | goal |",
            "|---|---|---|---|---|---|---|", mesh_line]
    return [*mesh, "", f"Where each pair's link set-up spends its time ({args.pages} pages, "
            "every pair of every try; the pages' link-step marks, `static/chat/timing.js`):",
            "", *step_table(race)]


def report(r: Results, args: argparse.Namespace, command: str) -> str:
    """The markdown section: each figure beside the plain data channel's, with the ratio."""
    f50, f99 = p(r.floor, 50), p(r.floor, 99)
    echo = ["| room | round trip p50 / p99 ms | plain RTCDataChannel p50 / p99 ms "
            "| page ÷ plain (p50 / p99) | goal p50 ≤ 5, p99 ≤ 15 | first 50 / last 50 median ms |",
            "|---|---|---|---|---|---|",
            f"| plain RTCDataChannel, {len(r.floor)} echoes back to back | {f50:.2f} / {f99:.2f} | "
            f"{f50:.2f} / {f99:.2f} | 1 | – | – |"]
    if r.floor_spaced:
        s50, s99 = p(r.floor_spaced, 50), p(r.floor_spaced, 99)
        echo.append(f"| plain RTCDataChannel, {len(r.floor_spaced)} echoes {args.gap} ms apart | "
                    f"{s50:.2f} / {s99:.2f} | {s50:.2f} / {s99:.2f} | 1 | – | – |")

    def row(name: str, samples: list[float], floor: list[float], goal: bool) -> str:
        e50, e99 = p(samples, 50), p(samples, 99)
        p50, p99 = p(floor, 50), p(floor, 99)
        head, tail = samples[:50], samples[-50:]
        return (f"| {name}, {len(samples)} echoes | {e50:.1f} / {e99:.1f} | {p50:.2f} / "
                f"{p99:.2f} | {e50 / p50:,.0f} / {e99 / p99:,.0f} | "
                + (met(e50 <= GOAL_ECHO_P50 and e99 <= GOAL_ECHO_P99) if goal else "–")
                + f" | {statistics.median(head):.1f} / {statistics.median(tail):.1f} |")

    for e in r.echoes:
        echo.append(row(f"Gibberish page, {e.size:,} messages, back to back", e.samples,
                        r.floor, True))
        if e.spaced:
            echo.append(row(f"Gibberish page, {e.size:,} messages, {args.gap} ms apart",
                            e.spaced, r.floor_spaced or r.floor, True))
    if r.floor_spaced:
        half = [ms / 2 for ms in r.floor_spaced]
        for e in r.echoes:
            if e.one_way:
                echo.append(row(f"Gibberish page, {e.size:,} messages, {args.gap} ms apart, "
                                "one way: A's Enter → in B's list (plain: half its round trip)",
                                e.one_way, half, False))
    if r.undrawn is not None:
        u = r.undrawn
        name = (f"the same, {u.size:,} messages, nothing drawn (`#chat-layout` not displayed: "
                "a diagnostic, not the product)")
        echo.append(row(name + ", back to back", u.samples, r.floor, False))
        if u.spaced:
            echo.append(row(name + f", {args.gap} ms apart", u.spaced,
                            r.floor_spaced or r.floor, False))
    blocks = [f"- {e.size:,} messages: " + ", ".join(f"{m:.1f}" for m in e.blocks(args.block))
              for e in r.echoes]
    cpu = [f"- {e.size:,} messages: Chromium {e.cpu.get('chromium', 0):.1f} ms ("
           + ", ".join(f"{k.split(': ')[1]} {v:.1f}" for k, v in
                       sorted(e.cpu.items(), key=lambda kv: -kv[1]) if k.startswith("chromium:"))
           + "; of the renderers' threads: " + ", ".join(
               f"{k.split(': ')[1]} {v:.1f}" for k, v in
               sorted(e.cpu.items(), key=lambda kv: -kv[1])
               if k.startswith("renderer thread:") and v >= 0.5)
           + f"), the server and Playwright {e.cpu.get('other', 0):.1f} ms" for e in r.echoes]
    if r.undrawn is not None:
        cpu.append(f"- {r.undrawn.size:,} messages, nothing drawn: Chromium "
                   f"{r.undrawn.cpu.get('chromium', 0):.1f} ms, the server and Playwright "
                   f"{r.undrawn.cpu.get('other', 0):.1f} ms")
    spaced = [(e, "") for e in r.echoes] + ([(r.undrawn, ", nothing drawn")] if r.undrawn
                                            else [])
    cpu += [f"- {e.size:,} messages{what}, {args.gap} ms apart: Chromium {e.spaced_cpu:.1f} ms "
            "per echo, its gap included" for e, what in spaced if e.spaced]

    def med(key: str) -> float:
        return statistics.median(o[key] for o in r.opens)

    link = statistics.median(r.floor_link)
    after_join = statistics.median(o["channel"] - o["joined"] for o in r.opens)
    first_after_dcl = statistics.median(o["first"] - o["dcl"] for o in r.opens)
    plain_dcl = statistics.median(r.plain_dcl)
    opens = [
        "| from navigation, median of " f"{len(r.opens)} | Gibberish page ms | plain ms "
        "| page ÷ plain | goal |", "|---|---|---|---|---|",
        f"| DOMContentLoaded | {med('dcl'):.0f} | {plain_dcl:.0f} (the server's start page) | "
        f"{med('dcl') / plain_dcl:.1f} | – |",
        f"| page ready (log loaded, view drawn) | {med('ready'):.0f} | – | – | – |",
        f"| socket joined the room | {med('joined'):.0f} | – | – | – |",
        f"| data channel open to the present peer | {med('channel'):.0f} | – | – | – |",
        f"| … of which after the join | {after_join:.0f} | {link:.1f} (one pair set up inside "
        f"one page) | {after_join / link:.1f} | "
        f"≤ 150: {met(after_join <= GOAL_CHANNEL_AFTER_JOIN)} |",
        f"| first live message shown (the peer answers the link) | {med('first'):.0f} | – "
        "| – | – |",
        f"| … of which after DOMContentLoaded | {first_after_dcl:.0f} | – | – | "
        f"≤ 250: {met(first_after_dcl <= GOAL_FIRST_AFTER_DCL)} |",
    ]
    mesh = mesh_lines(r, args)
    steps = ["| step (wall time, awaits included) | calls per echo | median ms | p99 ms |",
             "|---|---|---|---|"]
    for e in r.echoes[-1:]:
        for label, values in sorted(e.steps.items()):
            if values:
                steps.append(f"| {label} | {len(values) / len(e.samples):.1f} | "
                             f"{p(values, 50):.2f} | {p(values, 99):.2f} |")
    lines = [
        "## The browser peer against a plain RTCDataChannel (issue 17)",
        "",
        f"`{command}`, run as root: a sealed network namespace (one veth address, no route "
        "out), the server inside it, Debian's Chromium headless driven by Playwright; every "
        "page in a profile of its own. The floor is an ordered RTCDataChannel between two "
        "plain pages of the same Chromium run, measured first. The UI echo: page A sets the "
        "composer's text and presses Enter (a keydown on `#composer-text`), page B sees the "
        "message added to `#messages` and answers the same way, and the time is taken on A "
        "from the Enter until B's answer is in A's list (DOM, before paint). Rooms are fresh; "
        "the long one is seeded in A's IndexedDB log (signed by A's device), reaches B by "
        "anti-entropy and the server by upload before the echo starts; 10 echoes of warm-up. "
        "Back to back, each echo starts as the one before ends: the figure is bound by the "
        "CPU an echo costs (every process on 2 cores), not by its path. "
        f"{args.gap} ms apart, each starts {args.gap} ms after the one before ended (people "
        "write seconds apart): the message's own path, with whatever the pages still draw "
        "or store of the echo before. The plain channel is measured both ways. "
        f"Machine: {machine('playwright')}, {r.chromium}; 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end (the machine is shared and noisy).",
        "",
        *echo,
        "",
        f"Medians per block of {args.block} echoes, in order:",
        "",
        *blocks,
        "",
        "CPU time per echo (user + system, every process of the browser, both pages; it "
        "moves far less with the machine's load than the wall time):",
        "",
        *cpu,
        "",
        "Opening a room where one peer is present (it writes one message through its composer "
        "when it shows the newcomer connected), from the newcomer's navigation; the marks "
        "are the page's own (`static/chat/browser-main.js`):",
        "",
        *opens,
        "",
        *mesh,
        "",
        "Where the echo's time goes, in the "
        f"{r.echoes[-1].size if r.echoes else 0:,}-message room: the page's own steps, its "
        "User Timing measures (`static/chat/timing.js`), on A and B together (each echo is "
        "two messages, each sent once and received once; the message is shown and sent at "
        "once, IndexedDB's group commit follows it):",
        "",
        *steps,
    ]
    for e in r.echoes:
        if e.profile:
            lines += ["", f"A CPU profile of both pages (V8 sampling profiler through the "
                      f"DevTools protocol, `--profile`) during the {e.size:,}-message room's "
                      "echo:", "", *e.profile]
    if r.errors:
        lines += ["", f"Uncaught errors in the pages: {len(r.errors)} ({r.errors[0]})"]
    return "\n".join(lines)
