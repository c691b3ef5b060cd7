"""A seeded fault-injection run: a server and N agents, each in every room of the run (one
agent, one connection per pair of devices, for all of them); a sender posts messages from every
live agent into each room in turn while the schedule kills, restarts, freezes and resumes the
server and the agents; then everything is healed and every room's logs must converge, with the
checker's four counts (lost, duplicated, order, divergence) at 0 in each room.

A message counts as acknowledged when its author's `POST /api/messages` answered 201: it is
then in the author's local log. A post that got no answer (its agent died or froze) does not
count, though its message may well exist and spread."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from launcher import HttpError, start_all
from tests.faults.checker import Counts, check
from tests.faults.cluster import Agent, Reader, Server, wait_mesh
from tests.faults.schedule import SERVER, Fault, make_schedule, timeline
from tests.helpers import poll


@dataclass
class RunReport:
    """What a run did and found."""

    seed: int
    agents: int
    duration: float
    faults: list[Fault]
    posted: int = 0
    acknowledged: list[str] = field(default_factory=list)
    messages: int = 0
    heal_s: float = 0.0
    counts: Counts | None = None
    # Per room: the acknowledged ids and the counts (`counts` sums them).
    room_acknowledged: dict[str, list[str]] = field(default_factory=dict)
    room_counts: dict[str, Counts] = field(default_factory=dict)

    def summary(self) -> str:
        kinds = {(f.target == SERVER, f.kind): 0 for f in self.faults}
        for f in self.faults:
            kinds[(f.target == SERVER, f.kind)] += 1
        hurt = ", ".join(f"{n} {'server' if s else 'agent'} {k}s"
                         for (s, k), n in sorted(kinds.items()))
        counts = self.counts.line() if self.counts else "not checked"
        if len(self.room_counts) > 1:
            counts += "".join(f"; #{room}: {c.line()}" for room, c in self.room_counts.items())
        rooms = max(1, len(self.room_counts))
        return (f"fault run seed={self.seed}: {self.agents} agents in {rooms} rooms, "
                f"{self.duration:.0f} s, "
                f"{len(self.faults)} faults ({hurt}); {self.posted} posts, "
                f"{len(self.acknowledged)} acknowledged, {self.messages} messages in the "
                f"converged log; healed and converged in {self.heal_s:.1f} s; {counts}")


class Sender(threading.Thread):
    """Posts a message every `interval` seconds from the next live agent into the next room,
    round robin."""

    def __init__(self, agents: list[Agent], interval: float, seed: int,
                 rooms: list[str]) -> None:
        super().__init__(name="fault-sender", daemon=True)
        self.agents = agents
        self.rooms = rooms
        self.interval = interval
        self.acknowledged: dict[str, list[str]] = {room: [] for room in rooms}
        self.posted = 0
        self._halt = threading.Event()
        self._rng = random.Random(seed)

    def run(self) -> None:
        turn = 0
        while not self._halt.wait(self.interval * self._rng.uniform(0.5, 1.5)):
            live = [a for a in self.agents if a.up]
            if not live:
                continue
            agent = live[turn % len(live)]
            room = self.rooms[turn % len(self.rooms)]
            turn += 1
            self.posted += 1
            try:
                reply = requests.post(agent.url + "/api/messages", timeout=5, json={
                    "text": f"{agent.name} says {self.posted}", "room": room})
            except (requests.RequestException, AssertionError):
                continue  # no answer: not acknowledged
            if reply.status_code == 201:
                self.acknowledged[room].append(reply.json()["message"]["id"])

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=30)


def converged(agents: list[Agent], readers: dict[str, Reader]) -> bool:
    """Every agent joined in every room, every outbox empty, every room's log equal to the
    server's."""
    try:
        for room, reader in readers.items():
            states = [a.state(room) for a in agents]
            if not all(s["server"]["connected"] and s["server"]["outbox"] == 0 for s in states):
                return False
            reference = reader.log_keys()
            if not all(a.log_keys(room) == reference for a in agents):
                return False
        return True
    except (requests.RequestException, HttpError):
        return False


def run_faults(workdir: Path, room: str | list[str], names: list[str], *, seed: int,
               duration: float, interval: float = 0.15, heal_timeout: float = 240.0,
               every_kind: bool = False, log: list[str] | None = None) -> RunReport:
    """Run one seeded fault run and return its report (the counts are in `report.counts`,
    summed over the rooms, and per room in `report.room_counts`). `room` is one room or the
    list of rooms every agent is in. `every_kind`: the schedule hurts the server and an agent
    both ways (see make_schedule)."""
    rooms = [room] if isinstance(room, str) else list(room)
    say = log.append if log is not None else print
    faults = make_schedule(seed, duration, names, every_kind=every_kind)
    report = RunReport(seed, len(names), duration, faults)
    say(f"schedule (seed {seed}):")
    for fault in faults:
        say("  " + fault.describe())
    server = Server(workdir / "server")
    agents = [Agent(name, workdir / name, server, rooms[0], rooms=tuple(rooms[1:]))
              for name in names]
    by_name: dict[str, Server | Agent] = {SERVER: server, **{a.name: a for a in agents}}
    sender = Sender(agents, interval, seed, rooms)
    try:
        server.start()
        start_all(agents)
        wait_mesh(agents, timeout=120)
        start = time.monotonic()
        sender.start()
        # A restart takes seconds (longer while the server is frozen): it runs in a thread of
        # its own so the schedule keeps its pace, and the next step on that process waits.
        restarting: dict[str, threading.Thread] = {}
        for step in timeline(faults):
            delay = start + step.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule's own pace, not a wait for a state
            if step.target in restarting:
                restarting.pop(step.target).join()
            target = by_name[step.target]
            if step.action == "kill":
                target.kill()
            elif step.action == "freeze":
                target.freeze()
            elif step.action == "thaw":
                target.thaw()
            else:
                restarting[step.target] = threading.Thread(target=target.start, daemon=True)
                restarting[step.target].start()
            say(f"  t={time.monotonic() - start:6.1f}s {step.action} {step.target}")
        remaining = start + duration - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        sender.stop()
        report.posted = sender.posted
        report.room_acknowledged = {r: list(ids) for r, ids in sender.acknowledged.items()}
        report.acknowledged = [i for ids in report.room_acknowledged.values() for i in ids]
        healing = time.monotonic()
        for thread in restarting.values():
            thread.join()
        for process in [server, *agents]:  # the server first: agents restart faster with it
            if process.frozen:
                process.thaw()
            elif not process.up:
                process.start()
        readers = {r: Reader(server, r, names[0]) for r in rooms}
        try:
            poll(lambda: converged(agents, readers), timeout=heal_timeout, interval=0.5,
                 message="every log converged")
        finally:
            report.heal_s = time.monotonic() - healing
            for r, reader in readers.items():
                logs = {a.name: a.log_keys(r) for a in agents}
                logs[SERVER] = reader.log_keys()
                report.messages += len(logs[SERVER])
                report.room_counts[r] = check(report.room_acknowledged[r], logs)
            report.counts = Counts(*(sum(getattr(c, f) for c in report.room_counts.values())
                                     for f in ("lost", "duplicated", "order", "divergence")))
            say(report.summary())
        return report
    finally:
        sender.stop()
        for agent in agents:
            agent.stop()
        server.stop()
