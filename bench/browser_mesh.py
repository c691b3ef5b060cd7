"""The browser benchmark's mesh race (bench/browser.py, figure 4): pages joining one room at
the same instant, the time to the full mesh, and where each pair's link set-up spends it,
read from the pages' link-step marks (static/chat/timing.js `linkStep`)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Page

from bench import browser_scripts as js
from bench.browser_pages import Bench, unique
from bench.report import percentile
from tests.browser.conftest import ONE_ROOM_ONLY
from tests.browser.test_mesh_race import full_mesh

STALL_S = 9.0  # tests/browser/test_mesh_race.py MESH_DEADLINE_S
# Switches the pages' link-step marks on before their modules load.
TIMING_ON = "globalThis.gibberishTiming = true;"
# Every page's own device, its join mark and its link-step marks, on the shared wall clock.
LINK_MARKS = """() => {
  const prefix = 'gibberish: link ';
  const joined = performance.getEntriesByName('gibberish:joined', 'mark')[0];
  const steps = [];
  for (const m of performance.getEntriesByType('mark')) {
    if (!m.name.startsWith(prefix)) continue;
    const rest = m.name.slice(prefix.length);
    const space = rest.indexOf(' ');
    steps.push([rest.slice(0, space), rest.slice(space + 1), performance.timeOrigin + m.startTime]);
  }
  return { device: document.getElementById('chat')?.dataset.device || null,
           joined: joined ? performance.timeOrigin + joined.startTime : null, steps };
}"""
# The steps of one pair's link, in the order they happen: (side, step, which occurrence).
# "o" is the offering side (the smaller device id), "a" the answering one. For steps an
# attempt can repeat, the last one before that side's channel opened counts.
PAIR_STEPS = [
    ("o", "join reply", "first"), ("o", "peer_joined", "first"),
    ("a", "join reply", "first"), ("a", "peer_joined", "first"),
    ("o", "listed", "first"), ("a", "listed", "first"),
    ("o", "offer begun", "last"), ("o", "offer set locally", "last"),
    ("o", "local candidate", "last-first"), ("o", "offer signed", "last"),
    ("o", "offer taken by the server", "last"),
    ("a", "offer received", "last"), ("a", "offer verified", "last"),
    ("a", "answer set locally", "last"), ("a", "local candidate", "first"),
    ("a", "answer signed", "last"), ("a", "answer taken by the server", "last"),
    ("o", "answer received", "last"), ("o", "answer verified", "last"),
    ("a", "candidate received", "first"), ("o", "candidate received", "last-first"),
    ("a", "ice checking", "last"), ("o", "ice checking", "last"),
    ("o", "ice connected", "last"), ("a", "ice connected", "last"),
    ("o", "connection connected", "last"), ("a", "connection connected", "last"),
    ("o", "channel open", "first"), ("a", "channel open", "first"),
    ("o", "gathering complete", "last"), ("a", "gathering complete", "last"),
]


@dataclass
class MeshRace:
    from_join: list[float] = field(default_factory=list)  # ms, last join -> full mesh
    from_navigation: list[float] = field(default_factory=list)
    stalls: int = 0
    # ms after the pair's later join, per (side, step), over every pair of every try
    steps: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    reoffers: int = 0  # "no answer: offering again", all pairs, all tries
    failures: int = 0
    pairs: int = 0
    signals: int = 0  # offers, answers and candidates received, all pairs, all tries
    made_ahead: int = 0  # offers sent from the page's spares


def pair_steps(offerer: dict[str, Any], answerer: dict[str, Any]) -> dict[tuple[str, str], float]:
    """One pair's step times, ms after the later of the two joins (offerer and answerer
    as LINK_MARKS gives them)."""
    start = max(offerer["joined"], answerer["joined"])
    sides = {"o": (offerer, answerer["device"]), "a": (answerer, offerer["device"])}
    opened = {}
    for side, (page, other) in sides.items():
        times = [t for d, s, t in page["steps"] if d == other and s == "channel open"]
        opened[side] = times[0] if times else float("inf")
    out = {}
    for side, step, which in PAIR_STEPS:
        page, other = sides[side]
        times = [t for d, s, t in page["steps"] if d == other and s == step]
        before = [t for t in times if t <= opened[side]] or times
        if not before:
            continue
        if which == "first":
            t = before[0]
        elif which == "last":
            t = before[-1]
        else:  # the first after the last offer began (this attempt's first)
            begun = [t for d, s, t in sides["o"][0]["steps"]
                     if d == sides["o"][1] and s == "offer begun" and t <= opened["o"]]
            t = next((x for x in before if not begun or x >= begun[-1]), before[-1])
        out[(side, step)] = t - start
    return out


def mesh_race(bench: Bench, count: int, tries: int) -> MeshRace:
    """`count` pages, each signed in with its device key made, navigate to one fresh room
    at the same instant, `tries` times (tests/browser/test_mesh_race.py). Per try: ms from
    the last page's join (its socket joined) to the last link shown connected, and from the
    first navigation; a try with no full mesh within STALL_S is a stall. Per pair: its link
    steps."""
    users = [unique(f"racer{i}") for i in range(count)]
    pages: list[Page] = []
    for user in users:
        page = bench.user_page(user, init_script=js.MEMBER_WATCH + ";\n" + TIMING_ON)
        bench.open_room(page, unique("warm"))
        pages.append(page)
    race = MeshRace()
    for attempt in range(tries):
        url = f"{bench.server.url}/rooms/{unique(f'race{attempt}')}"
        started = time.monotonic()
        for page, user in zip(pages, users, strict=True):
            # One room at once, as the race is about: the page forgets the rooms of earlier
            # tries, kept in this browser or listed by the server (a page otherwise rejoins every
            # room it keeps, and with none kept every room the server lists for the user).
            page.evaluate(ONE_ROOM_ONLY, [url, user])
        while not full_mesh(pages, users):
            if time.monotonic() - started > STALL_S:
                race.stalls += 1
                break
            time.sleep(0.05)
        else:
            seen = [page.evaluate(js.MESH_TIMES) for page in pages]
            last_link = max(t for s, u in zip(seen, users, strict=True)
                            for name, t in s["connected"].items() if name != f"{u} (you)")
            race.from_join.append(last_link - max(s["joined"] for s in seen))
            race.from_navigation.append(last_link - min(s["origin"] for s in seen))
            marks = sorted((page.evaluate(LINK_MARKS) for page in pages),
                           key=lambda m: m["device"])
            for i, offerer in enumerate(marks):
                for answerer in marks[i + 1:]:
                    race.pairs += 1
                    for key, ms in pair_steps(offerer, answerer).items():
                        race.steps.setdefault(key, []).append(ms)
            for m in marks:
                race.reoffers += sum(s == "no answer: offering again" for _, s, _ in m["steps"])
                race.failures += sum(s == "failed" for _, s, _ in m["steps"])
                race.signals += sum(s.endswith(" received") for _, s, _ in m["steps"])
                race.made_ahead += sum(s == "offer made ahead" for _, s, _ in m["steps"])
    return race


def step_table(race: MeshRace) -> list[str]:
    """The markdown table of the pairs' link steps, in the order of PAIR_STEPS."""
    lines = ["| side | step | median ms after the pair's later join | p90 ms | pairs |",
             "|---|---|---|---|---|"]
    names = {"o": "offering", "a": "answering"}
    for side, step, _ in PAIR_STEPS:
        values = race.steps.get((side, step))
        if values:
            lines.append(f"| {names[side]} | {step} | {statistics.median(values):.0f} | "
                         f"{percentile(values, 90):.0f} | {len(values)} |")
    lines.append(f"\n{race.pairs} pairs, {race.signals / max(1, race.pairs):.1f} signals "
                 f"relayed per pair; offers made ahead: {race.made_ahead}; offers made again "
                 f"for want of an answer: "
                 f"{race.reoffers}; links failed and retried: {race.failures}.")
    return lines
