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
import tempfile
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page

from bench import browser_scripts as js
from bench.browser_mesh import mesh_race
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
from bench.browser_report import EchoRun, Results, mesh_lines, report
from bench.report import write_section
from tests.browser.conftest import missing_prerequisite, state_of
from tests.browser.test_long_room import SEED
from tests.helpers import poll

BLOCK = 25  # echoes per block of the per-block medians
# What a trace of the echo records: the pages' tasks and scripts, their user timings, and
# IndexedDB's work (open the file in chrome://tracing or Perfetto).
TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline",
                    "v8.execute", "blink.user_timing", "IndexedDB", "webrtc"]
FLOOR_TRIES_MAX = 10  # plain link set-ups (one pair, six pairs) measured in one page
# The echo once more with the chat laid out and painted not at all (the messages still go into
# the DOM, which is where the echo is timed): the same path without the drawing. Through the
# CSSOM: the page's Content-Security-Policy refuses an inline style sheet.
NOTHING_DRAWN = ("() => document.getElementById('chat-layout')"
                 ".style.setProperty('display', 'none', 'important')")


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
        # Both pages read the same machine clock (performance.timeOrigin + now()).
        sent: dict[str, float] = a.evaluate("() => globalThis.sentAt")
        seen: dict[str, float] = b.evaluate("() => globalThis.seenAt")
        run.one_way = [seen[f"ping {i}"] - sent[f"ping {i}"]
                       for i in range(10 + count, 10 + 2 * count)]
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
        poll(lambda: a.evaluate(js.ALL_ROOMS_JOINED), timeout=60,
             message="the present page's rooms joined")
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
