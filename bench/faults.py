"""Recovery times after faults, with real processes on loopback (a server and three agents):

- server restart → converged log: the server is killed (-9) with `history` messages in its
  log, the agents post `missed` more while it is down, and it is started again; measured from
  its start until every outbox is empty and its log equals every agent's;
- peer restart → caught up: one agent is killed, the two others post `missed` messages, and
  it is started again with its data dir; measured from its start until its log holds the whole
  room, once with the server up (history from the server and the peers) and once with the
  server down (the mesh re-formed through a rendezvous, history from the peers).

    .venv/bin/python -m bench.faults [--history 500] [--missed 100 500] [--trials 3]
                                     [--reconnect-max S] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.report import machine, write_section
from launcher import start_all
from tests.faults.chaos import converged
from tests.faults.cluster import Agent, Reader, Server, wait_mesh
from tests.helpers import poll
from tests.signaling.conftest import unique_name

NAMES = ("alice", "bob", "carol")
REJOINED = "server restart → every agent joined again"
CONVERGED = "server restart → converged log"
CAUGHT_UP_WITH_SERVER = "peer restart → caught up, server up"
CAUGHT_UP_WITHOUT_SERVER = "peer restart → caught up, server down (mesh via rendezvous)"


def _room(work: Path, reconnect_max: float | None) -> tuple[Server, list[Agent], str]:
    room = unique_name("bench")
    server = Server(work / "server", {"RATELIMIT_PUBLISH": "1000000 per 10 seconds"})
    server.start()
    # The agents' own reconnection back-off unless told (not the tests' short one): the figures
    # are what a user's agent does.
    agents = [Agent(unique_name(n), work / n, server, room, reconnect_max=reconnect_max)
              for n in NAMES]
    start_all(agents)
    wait_mesh(agents, timeout=120)
    return server, agents, room


def _post(agents: list[Agent], count: int, label: str) -> None:
    for i in range(count):
        agents[i % len(agents)].send(f"{label} {i}")


def _everyone_has(agents: list[Agent], total: int, timeout: float = 300) -> None:
    for agent in agents:
        poll(partial(_holds, agent, total), timeout=timeout, interval=0.05,
             message=f"{agent.name} holds {total}")


def _holds(agent: Agent, total: int) -> bool:
    return agent.stored() == total


def _server_gone(agents: list[Agent]) -> None:
    for agent in agents:
        poll(partial(_offline, agent), timeout=30, message=f"{agent.name} sees the server gone")


def _offline(agent: Agent) -> bool:
    return not agent.state()["server"]["connected"]


def server_restart(work: Path, history: int, missed: int,
                   reconnect_max: float | None = None) -> dict[str, float]:
    """Seconds from the server's restart until every agent joined it again, and until the
    converged log."""
    server, agents, room = _room(work, reconnect_max)
    try:
        _post(agents, history, "history")
        _everyone_has(agents, history)
        poll(lambda: all(a.state()["server"]["outbox"] == 0 for a in agents), timeout=120,
             message="the history uploaded")
        server.kill()
        _server_gone(agents)
        _post(agents, missed, "missed")
        _everyone_has(agents, history + missed)
        started = time.monotonic()
        server.start()
        reader = Reader(server, room, agents[0].name)
        poll(lambda: all(not _offline(a) for a in agents), timeout=300, interval=0.05,
             message="every agent joined again")
        rejoined = time.monotonic() - started
        poll(lambda: converged(agents, {room: reader}), timeout=300, interval=0.05,
             message="the converged log")
        return {REJOINED: rejoined, CONVERGED: time.monotonic() - started}
    finally:
        for agent in agents:
            agent.stop()
        server.stop()


def peer_restart(work: Path, history: int, missed: int, server_up: bool,
                 reconnect_max: float | None = None) -> dict[str, float]:
    """Seconds from a killed agent's restart until it holds the whole room."""
    server, agents, _ = _room(work, reconnect_max)
    alice, bob, carol = agents
    try:
        _post(agents, history, "history")
        _everyone_has(agents, history)
        if not server_up:
            server.kill()
            _server_gone(agents)
        carol.kill()
        _post([alice, bob], missed, "missed")
        _everyone_has([alice, bob], history + missed)
        started = time.monotonic()
        carol.start()
        _everyone_has([carol], history + missed)
        elapsed = time.monotonic() - started
        assert carol.log_keys() == alice.log_keys()
        return {CAUGHT_UP_WITH_SERVER if server_up else CAUGHT_UP_WITHOUT_SERVER: elapsed}
    finally:
        for agent in agents:
            agent.stop()
        server.stop()


def _trials(run: Callable[[Path], dict[str, float]], trials: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    for _ in range(trials):
        with tempfile.TemporaryDirectory(prefix="gibberish-bench-faults-") as work:
            for name, seconds in run(Path(work)).items():
                results.setdefault(name, []).append(seconds)
    return results


def _cell(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} (max {max(samples):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=500,
                        help="messages in the room before the fault")
    parser.add_argument("--missed", type=int, nargs="+", default=[100, 500],
                        help="messages posted during the fault (one row each)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--reconnect-max", type=float, default=None, metavar="S",
                        help="the agents' --reconnect-max (default: theirs, 10 s); a smoke run "
                             "sets it short so as not to wait the back-off out")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    rows = []
    for missed in args.missed:
        size = f"{args.history} + {missed}"
        runs: list[Callable[[Path], dict[str, float]]] = [
            partial(server_restart, history=args.history, missed=missed,
                    reconnect_max=args.reconnect_max),
            partial(peer_restart, history=args.history, missed=missed, server_up=True,
                    reconnect_max=args.reconnect_max),
            partial(peer_restart, history=args.history, missed=missed, server_up=False,
                    reconnect_max=args.reconnect_max),
        ]
        for run in runs:
            for name, samples in _trials(run, args.trials).items():
                rows.append((name, size, _cell(samples)))
        print(*rows[-3:], sep="\n", flush=True)
    table = ["| recovery | messages: history + during the fault | seconds, median (max) |",
             "|---|---|---|"]
    table += [f"| {name} | {size} | {cell} |" for name, size, cell in rows]
    text = "\n".join([
        "## Recovery after faults",
        "",
        f"`python -m bench.faults --history {args.history} --missed "
        f"{' '.join(map(str, args.missed))} --trials {args.trials}"
        f"{'' if args.reconnect_max is None else f' --reconnect-max {args.reconnect_max:g}'}`"
        ": a server and three agents "
        "on loopback, a fresh room per trial, messages of about 20 characters. Server restart: "
        "killed (-9) with the history in its log, the agents post the rest while it is down; "
        "timed from its restart until every outbox is empty and its log equals every agent's. "
        "Peer restart: one agent killed, the other two post the rest; timed from its restart "
        "(process start, sign-in included) until its log holds the whole room. Machine: "
        f"{machine('aiortc', 'aioice', 'python-socketio')}.",
        "",
        *table,
        "",
        "Most of the server-restart time is the agents' reconnection backoff (0.5 s doubling "
        "to 10 s, jittered; the row \"every agent joined again\"): an agent that has found "
        "the server gone for several seconds tries again only seconds later. What follows "
        "(uploads, 100 envelopes per `publish`, and the history read back) is the difference "
        "between the two rows. A peer restart's time includes its process start and sign-in "
        "(about half a second); its data dir already holds the history, so it fetches only "
        "what it missed.",
    ])
    print(text)
    if not args.no_write:
        print(f"written to {write_section('faults', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
