"""The browser peer at the speed of the browser (issue 17): Gibberish's page in Debian's
Chromium, beside a plain RTCDataChannel between two pages of the same Chromium run, in a
sealed network namespace (tests/browser/sealed_network.py; needs root).

    .venv/bin/python -m bench.browser [--floor 1000] [--echoes 200] [--gap 100] [--long 2000]
                                      [--opens 5] [--tries 5] [--trace DIR]
                                      [--profile DIR] [--smoke]
                                      [--no-write]

Figures: (1) the floor, a plain RTCDataChannel echo round trip; (2) the product's UI echo,
page A types into the composer and presses Enter, page B shows it and answers through its
own composer, A shows the answer, in a room of 10 messages and in a long one (`--long
10000` for the issue's goal), with per-block medians, back to back and `--gap` ms apart;
(3) a page's opening, from its navigation, to an already-present peer; (4) four pages
joining one room at the same instant, time to the full mesh and stalls (`--tries 50` for the
issue's goal). Plus where the echo's time goes: the page's own steps, its User Timing
measures (static/chat/timing.js; and, with `--trace DIR`, a Chromium trace of the long
room's echo)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page

from bench import browser_scripts as js
from bench.browser_mesh import MeshRace, mesh_race, step_table
from bench.browser_pages import (
    LONG,
    Bench,
    chromium_in_sealed_network,
    floor_echo,
    floor_links,
    last_text,
    ready_and_quiet,
    unique,
)
from bench.browser_profile import PageProfiler, descendants_cpu, summary
from bench.report import machine, percentile, write_section
from tests.browser.conftest import missing_prerequisite, state_of
from tests.browser.test_long_room import SEED
from tests.helpers import poll

BLOCK = 25  # echoes per block of the per-block medians
# What a trace of the echo records: the pages' tasks and scripts, their user timings, and
# IndexedDB's work (open the file in chrome://tracing or Perfetto).
TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline",
                    "v8.execute", "blink.user_timing", "IndexedDB", "webrtc"]
FLOOR_TRIES_MAX = 10  # plain link set-ups (one pair, six pairs) measured in one page
GOAL_ECHO_P50, GOAL_ECHO_P99 = 5.0, 15.0
# The echo once more with the chat laid out and painted not at all (the messages still go into
# the DOM, which is where the echo is timed): the same path without the drawing. Through the
# CSSOM: the page's Content-Security-Policy refuses an inline style sheet.
NOTHING_DRAWN = ("() => document.getElementById('chat-layout')"
                 ".style.setProperty('display', 'none', 'important')")
GOAL_CHANNEL_AFTER_JOIN, GOAL_FIRST_AFTER_DCL, GOAL_MESH = 150.0, 250.0, 250.0


@dataclass
class EchoRun:
    """The UI echo in a room that held `size` messages before it began."""

    size: int
    samples: list[float]  # ms, back to back
    spaced: list[float] = field(default_factory=list)  # ms, each GAP after the one before
    spaced_cpu: float = 0.0  # Chromium's CPU ms per spaced echo (its gap included)
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


def echo_run(bench: Bench, pages: tuple[Page, Page], users: tuple[str, str], size: int,
             count: int, gap: int, trace: Path | None = None, profile: Path | None = None,
             undrawn: bool = False) -> EchoRun:
    """A fresh room holding `size` messages (signed by A's device and stored in its log; B
    gets them by anti-entropy, the server by upload), then `count` UI echoes A -> B -> A back
    to back, and `count` more each `gap` ms after the one before (none if 0);
    `undrawn`: with the chat hidden on both pages first (NOTHING_DRAWN)."""
    a, b = pages
    room = unique("echo")
    bench.open_room(a, room)
    a.evaluate(SEED, {"user": users[0], "room": room, "count": size})
    a.reload()
    a.wait_for_selector("#chat[data-ready]", timeout=LONG)
    bench.open_room(b, room)
    poll(lambda: state_of(a).get(users[1]) == "connected"
         and state_of(b).get(users[0]) == "connected", timeout=60, message="A and B linked")
    poll(lambda: last_text(b) == f"old {size}", timeout=LONG / 1000,
         message=f"B holds the room's {size} messages")
    poll(lambda: ready_and_quiet(a) and ready_and_quiet(b), timeout=LONG / 1000,
         message="both pages uploaded everything")
    for page in pages:
        if undrawn:
            page.evaluate(NOTHING_DRAWN)
        page.evaluate(js.TIME_STEPS)
    b.evaluate(js.RESPONDER)
    a.evaluate(js.ECHO, {"count": 10, "start": 0})  # warm-up, not counted
    for page in pages:
        page.evaluate(js.READ_STEPS)
    if trace is not None:
        bench.browser.start_tracing(path=trace, categories=TRACE_CATEGORIES)
    profilers = [PageProfiler(page) for page in pages] if profile is not None else []
    for profiler in profilers:
        profiler.start()
    cpu_before = descendants_cpu()
    try:
        samples: list[float] = a.evaluate(js.ECHO, {"count": count, "start": 10})
    finally:
        if trace is not None:
            bench.browser.stop_tracing()
    cpu = {k: 1000 * (v - cpu_before.get(k, 0.0)) / count
           for k, v in descendants_cpu().items()}
    profiled = [profiler.stop(Path(f"{profile}-{name}.cpuprofile"))
                for profiler, name in zip(profilers, "AB", strict=False)]
    steps: dict[str, list[float]] = {}
    for page in pages:
        for label, values in page.evaluate(js.READ_STEPS).items():
            steps.setdefault(label, []).extend(values)
    run = EchoRun(size, samples, steps=steps, cpu=cpu,
                  profile=summary(profiled, count) if profiled else [])
    if gap:
        cpu_before = descendants_cpu()
        run.spaced = a.evaluate(js.ECHO, {"count": count, "start": 10 + count, "gap": gap})
        run.spaced_cpu = 1000 * (descendants_cpu().get("chromium", 0.0)
                                 - cpu_before.get("chromium", 0.0)) / count
    return run


def open_times(bench: Bench, present: Page, newcomer: tuple[Page, str], tries: int,
               ) -> tuple[list[dict[str, float]], list[float]]:
    """`tries` times: the present page opens a fresh room; the newcomer navigates to it and
    its marks are read once the present page's greeting is shown. Also the start page's
    DOMContentLoaded in the newcomer's profile, the plain page beside it."""
    a, (b, b_user) = present, newcomer
    rows, plain = [], []
    for _ in range(tries):
        room = unique("open")
        bench.open_room(a, room)
        a.evaluate(js.GREET_NEWCOMER, b_user)
        b.goto(f"{bench.server.url}/rooms/{room}", wait_until="commit")

        def shown() -> dict[str, float] | None:
            marks: dict[str, float] = b.evaluate(js.OPEN_MARKS)
            return marks if marks["first"] is not None else None

        marks = poll(shown, timeout=60, message="the newcomer's first message")
        assert marks is not None
        rows.append(marks)
        b.goto(f"{bench.server.url}/")
        plain.append(float(b.evaluate(
            "() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")))
    return rows, plain


def run(args: argparse.Namespace, log: Callable[[str], None]) -> Results:
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="gibberish-bench-browser-"))
    with chromium_in_sealed_network(work) as (browser, server):
        bench = Bench(browser, server)
        results.chromium = f"Chromium {browser.version}"
        try:
            if not args.mesh_only:
                log("floor: a plain RTCDataChannel between two pages")
                results.floor = floor_echo(bench, args.floor)
                if args.gap:
                    results.floor_spaced = floor_echo(bench, args.echoes, args.gap)
            users = (unique("alice"), unique("bob"))
            a, b = bench.user_page(users[0]), bench.user_page(users[1])
            # Chromium caps the connections a page may create, closed ones included.
            floor_tries = min(max(args.opens, args.tries), FLOOR_TRIES_MAX)
            results.floor_link = floor_links(a, 1, floor_tries)
            results.floor_mesh = floor_links(a, 6, floor_tries)
            if args.mesh_only:
                log(f"{args.pages} pages joining one room at once, {args.tries} tries")
                results.race = mesh_race(bench, args.pages, args.tries)
                return results
            for size in (args.short, args.long):
                log(f"UI echo in a room of {size:,} messages")
                trace = (Path(args.trace) / f"echo-{size}-messages.json"
                         if args.trace and size == args.long else None)
                profile = (Path(args.profile) / f"echo-{size}-messages"
                           if args.profile and size == args.long else None)
                results.echoes.append(echo_run(bench, (a, b), users, size, args.echoes,
                                               args.gap, trace, profile))
                if trace is not None:
                    log(f"Chromium trace of this echo written to {trace}")
            log("UI echo with nothing drawn (a diagnostic: where the drawing's share ends)")
            results.undrawn = echo_run(bench, (a, b), users, args.short, args.echoes,
                                       args.gap, undrawn=True)
            log("opening a room with a peer present")
            results.opens, results.plain_dcl = open_times(bench, a, (b, users[1]), args.opens)
            log(f"{args.pages} pages joining one room at once, {args.tries} tries")
            results.race = mesh_race(bench, args.pages, args.tries)
        finally:
            results.errors = list(bench.errors)
            bench.close()
    return results


def p(samples: list[float], q: float) -> float:
    return percentile(samples, q)


def mesh_lines(r: Results, args: argparse.Namespace) -> list[str]:
    """The mesh race's table beside six plain pairs linked at once, and its step table."""
    def met(ok: bool) -> str:
        return "met" if ok else "not met"

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
    def met(ok: bool) -> str:
        return "met" if ok else "not met"

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--floor", type=int, default=1000, help="plain channel echoes")
    parser.add_argument("--echoes", type=int, default=200, help="UI echoes per room")
    parser.add_argument("--gap", type=int, default=100,
                        help="ms between spaced echoes (0: back to back only)")
    parser.add_argument("--short", type=int, default=10, help="messages in the short room")
    parser.add_argument("--long", type=int, default=2000, help="messages in the long room")
    parser.add_argument("--block", type=int, default=BLOCK, help="echoes per block median")
    parser.add_argument("--opens", type=int, default=5, help="room openings")
    parser.add_argument("--pages", type=int, default=4, help="pages joining at once")
    parser.add_argument("--tries", type=int, default=5, help="joins at once")
    parser.add_argument("--trace", metavar="DIR",
                        help="save a Chromium trace of the long room's echo in DIR")
    parser.add_argument("--profile", metavar="DIR",
                        help="take a CPU profile of both pages during the long room's echo, "
                             "saved in DIR and summarised in the report")
    parser.add_argument("--smoke", action="store_true", help="a tiny run, under a minute")
    parser.add_argument("--mesh-only", action="store_true",
                        help="only the mesh race and its plain figure (printed, not written)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.floor, args.echoes, args.short, args.long, args.block = 20, 10, 3, 30, 5
        args.opens, args.tries = 1, 1
    for directory in (args.trace, args.profile):
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
    reason = missing_prerequisite()
    if reason is not None:
        parser.error(f"needs a sealed network and Debian's Chromium: {reason}")
    results = run(args, lambda text: print(f"-- {text}", flush=True))
    command = "python -m bench.browser" + (" --smoke" if args.smoke else "".join(
        f" --{name} {getattr(args, name)}" for name in
        ("floor", "echoes", "gap", "long", "opens", "tries")))
    if args.mesh_only:
        print("\n".join([f"`{command} --mesh-only`, {results.chromium}, 1-minute load average "
                         f"{os.getloadavg()[0]:.1f}", "", *mesh_lines(results, args)]))
        return 0
    text = report(results, args, command)
    print(text)
    if not args.no_write:
        print(f"written to {write_section('browser', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
