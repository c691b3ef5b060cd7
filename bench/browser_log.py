"""The browser log in a long room (issue 17): what a room's length costs a page that opens it,
in Debian's Chromium in the sealed network namespace (tests/browser/sealed_network.py; needs
root).

    .venv/bin/python -m bench.browser_log [--sizes 100,10000,50000] [--tries 15] [--opens 5]
                                          [--smoke] [--no-write]

For each size, a fresh room whose `size` messages are in the page's IndexedDB log (signed by
the page's device, as tests/browser/test_long_room.py seeds them), then, in one Chromium run:

- opening the log: `BrowserLog.load()` (the newest LOG_WINDOW messages, the outbox, the heads,
  the counters), beside its baseline, the room read whole as the log's load did before (one
  getAll of the room, put in display order): the ratio is what the window saves;
- an older page: 50 messages from before the window, read from the `order` index;
- a peer's pull: what a peer lacking the room's last 1,000 messages is sent (`missingFor`);
- the page opening that room, from its navigation: the page's mark `gibberish:ready` (log
  loaded, view drawn), beside the server's start page's DOMContentLoaded in the same profile.

Medians (and p90) of `--tries` runs each, after one warm-up (the first open after seeding also
rebuilds and stores the heads)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.browser_pages import Bench, chromium_in_sealed_network, unique
from bench.report import percentile, write_section
from tests.browser.conftest import missing_prerequisite
from tests.browser.test_long_room import SEED

PULL = 1000  # messages a peer lacks in the pull figure

# In the page: `tries` timings of each way to read the room (after a warm-up of each).
TIME_READS = """async ({ user, room, tries, pull }) => {
  const { BrowserLog, loadOrCreateDeviceKey, openDatabase } =
    await import('/static/chat/browser-log.js');
  const { compareOrder } = await import('/static/chat/protocol/envelope.js');
  const db = await openDatabase(user);
  const key = await loadOrCreateDeviceKey(db);
  const whole = async () => {
    const tx = db.transaction(['messages'], 'readonly');
    const rows = await new Promise((resolve, reject) => {
      const request = tx.objectStore('messages').index('room').getAll(room);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    rows.sort((a, b) => compareOrder(a.env, b.env));
    return rows.length;
  };
  let rebuilt = 0;
  const open = async () => {
    const log = new BrowserLog(db, room);
    await log.load(key.device);
    await log.flushed();
    rebuilt += log.headsRebuilt ? 1 : 0;
    return log;
  };
  const time = async (step) => {
    const t0 = performance.now();
    await step();
    return performance.now() - t0;
  };
  const warm = await open();
  const held = warm.heads.count;
  const newest = warm.recent.length;
  const oldest = warm.recent[0].env;
  const lacking = new Map([[key.device, Math.max(0, held - pull)]]);
  const out = { held, newest, whole: [], load: [], older: [], pull: [], pulled: 0, olderGot: 0 };
  // The windowed reads first, the whole room after: its garbage (every message of the room,
  // read) would be collected during the next step timed.
  for (let i = 0; i < tries; i++) {
    out.load.push(await time(open));
    const log = await open();
    out.older.push(await time(async () => {
      out.olderGot = (await log.page(oldest, 50)).envs.length;
    }));
    out.pull.push(await time(async () => {
      out.pulled = (await log.missingFor(lacking)).length;
    }));
  }
  await whole();
  for (let i = 0; i < tries; i++) out.whole.push(await time(whole));
  db.close();
  out.rebuilt = rebuilt;
  return out;
}"""

READY_MARK = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const mark = performance.getEntriesByName('gibberish:ready', 'mark')[0];
  return { ready: mark ? mark.startTime : null, dcl: nav ? nav.domContentLoadedEventEnd : null };
}"""


def seed(bench: Bench, user: str, size: int) -> tuple[Any, str]:
    """A signed-in page of `user` that has joined a fresh room, with `size` messages seeded."""
    page = bench.user_page(user)
    room = unique("long")
    bench.open_room(page, room)
    page.evaluate(SEED, {"user": user, "room": room, "count": size})
    return page, room


def opens(bench: Bench, page: Any, room: str, count: int) -> tuple[list[float], list[float]]:
    """`count` navigations to the room: the page's ready mark, and the start page's
    DOMContentLoaded in the same profile."""
    ready, plain = [], []
    for _ in range(count + 1):
        bench.open_room(page, room)
        ready.append(float(page.evaluate(READY_MARK)["ready"]))
        page.goto(f"{bench.server.url}/")
        plain.append(float(page.evaluate(READY_MARK)["dcl"]))
    return ready[1:], plain[1:]


def row(name: str, samples: list[float], base: list[float] | None = None) -> str:
    p50, p90 = statistics.median(samples), percentile(samples, 90)
    if base is None:
        return f"| {name} | {p50:.1f} / {p90:.1f} | – | – |"
    b50, b90 = statistics.median(base), percentile(base, 90)
    return f"| {name} | {p50:.1f} / {p90:.1f} | {b50:.1f} / {b90:.1f} | {p50 / b50:.2f} |"


def run(args: argparse.Namespace) -> tuple[str, list[str]]:
    lines: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="gibberish-bench-browser-log-"))
    with chromium_in_sealed_network(work) as (browser, server):
        bench = Bench(browser, server)
        try:
            for size in args.sizes:
                print(f"-- a room of {size:,} messages", flush=True)
                user = unique("reader")
                page, room = seed(bench, user, size)
                ready, plain = opens(bench, page, room, args.opens)
                if args.ready_only:
                    lines.append(row(f"{size:,}: the page showing the room, ready from "
                                     "navigation / the start page's DOMContentLoaded",
                                     ready, plain))
                    page.close()
                    continue
                got = page.evaluate(TIME_READS, {"user": user, "room": room,
                                                 "tries": args.tries, "pull": PULL})
                assert got["held"] == size, got["held"]
                assert got["rebuilt"] == 0, f"{got['rebuilt']} opens rebuilt the heads"
                lines += [
                    row(f"{size:,}: open the log (BrowserLog.load: newest {got['newest']}, "
                        "heads, outbox) / the room read whole", got["load"], got["whole"]),
                    row(f"{size:,}: an older page ({got['olderGot']} before the window, from "
                        "IndexedDB)", got["older"]),
                    row(f"{size:,}: a peer's pull ({got['pulled']:,} messages it lacks)",
                        got["pull"]),
                    row(f"{size:,}: the page showing the room, ready from navigation / the "
                        "start page's DOMContentLoaded", ready, plain),
                ]
                page.close()
        finally:
            errors = list(bench.errors)
            bench.close()
    return f"Chromium {browser.version}", lines + [f"- page error: {e}" for e in errors]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_log", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,10000,50000",
                        help="messages in each room, comma-separated")
    parser.add_argument("--tries", type=int, default=15, help="timings of each read")
    parser.add_argument("--opens", type=int, default=5, help="navigations to each room")
    parser.add_argument("--ready-only", action="store_true",
                        help="only the page's opening (it runs on the code before the windowed "
                             "log too: an A/B from a second work tree)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run, under a minute")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.smoke:
        args.sizes, args.tries, args.opens = [20, 500], 2, 1
    reason = missing_prerequisite()
    if reason is not None:
        parser.error(f"needs a sealed network and Debian's Chromium: {reason}")
    chromium, lines = run(args)
    command = "python -m bench.browser_log" + (" --smoke" if args.smoke else (
        f" --sizes {','.join(map(str, args.sizes))} --tries {args.tries} --opens {args.opens}"))
    text = "\n".join([
        "## The browser log in a long room (issue 17)",
        "",
        f"`{command}`, run as root: the sealed network namespace, {chromium}, one page. Each "
        "room's messages are seeded in the page's IndexedDB log; the page opens the room's "
        "log holding only its newest messages, the outbox and the per-device heads, where it "
        "read the room whole before (the baseline, measured in the same page). Milliseconds, "
        f"median / p90 of {args.tries} (navigations: {args.opens}). 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        "| room: step | ms | baseline ms | ÷ baseline |",
        "|---|---|---|---|",
        *lines,
    ])
    print(text)
    if not args.no_write:
        print(f"written to {write_section('browser-log', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
