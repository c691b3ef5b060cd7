"""Seeded fault schedules: which process to hurt, how, when, and for how long. Pure code: the
same seed, duration and targets always give the same schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

SERVER = "server"
Kind = Literal["kill", "freeze"]
# Each (on the server?, kind) pair: the server or an agent, killed or frozen.
KINDS: tuple[tuple[bool, Kind], ...] = ((True, "kill"), (True, "freeze"), (False, "kill"),
                                        (False, "freeze"))


@dataclass(frozen=True)
class Fault:
    """At `at` seconds into the run, kill -9 (`kill`, restarted after `hold` s) or SIGSTOP
    (`freeze`, SIGCONT after `hold` s) the server or one agent."""

    at: float
    target: str
    kind: Kind
    hold: float

    def describe(self) -> str:
        undo = "restart" if self.kind == "kill" else "SIGCONT"
        verb = "kill -9" if self.kind == "kill" else "SIGSTOP"
        return f"t={self.at:6.1f}s {verb:<7} {self.target:<8} {undo} after {self.hold:.1f}s"


@dataclass(frozen=True)
class Step:
    """One action of the timeline a schedule unfolds into."""

    at: float
    target: str
    action: Literal["kill", "restart", "freeze", "thaw"]


def make_schedule(seed: int, duration: float, agents: list[str], *, mean_gap: float = 4.0,
                  hold: tuple[float, float] = (2.0, 9.0), server_share: float = 0.3,
                  every_kind: bool = False) -> list[Fault]:
    """Faults over `duration` seconds, about one every `mean_gap` seconds (exponential gaps).

    The server is the target of about `server_share` of them, the agents share the rest;
    kills and freezes are equally likely. A process is hurt again only a second after it was
    healed, so faults on one process never overlap; faults on different processes do.

    With `every_kind`, each of the four kinds (the server or an agent, killed or frozen) comes
    up: while one has not, the next fault is one that has not (a seeded choice among those
    whose target is free), and the schedule runs past `duration` until all four did. A short
    run then hurts everything every way; without it, the same seed gives the same schedule as
    it always did.
    """
    rng = random.Random(seed)
    healed_at = {name: 0.0 for name in [SERVER, *agents]}
    missing = set(KINDS) if every_kind else set()
    faults: list[Fault] = []
    at = rng.uniform(1.0, mean_gap)
    while at < duration or missing:
        target = SERVER if rng.random() < server_share else rng.choice(agents)
        if healed_at[target] + 1.0 <= at:
            kind: Kind = "kill" if rng.random() < 0.5 else "freeze"
            if missing and (target == SERVER, kind) not in missing:
                target, kind = (_missing_kind(rng, sorted(missing), target, at, healed_at)
                                or (target, kind))
            length = round(rng.uniform(*hold), 1)
            faults.append(Fault(round(at, 1), target, kind, length))
            healed_at[target] = at + length
            missing.discard((target == SERVER, kind))
        at += rng.expovariate(1.0 / mean_gap)
    return faults


def _missing_kind(rng: random.Random, missing: list[tuple[bool, Kind]], drawn: str, at: float,
                  healed_at: dict[str, float]) -> tuple[str, Kind] | None:
    """A fault of a kind not yet scheduled whose target is free at `at`: the server, or an
    agent (the one drawn if it is one, else a seeded choice among the free ones); None when
    every missing kind's target is busy."""
    free_agents = [drawn] if drawn != SERVER else [
        a for a in healed_at if a != SERVER and healed_at[a] + 1.0 <= at]
    server_free = healed_at[SERVER] + 1.0 <= at
    choices = [(on_server, kind) for on_server, kind in missing
               if (server_free if on_server else free_agents)]
    if not choices:
        return None
    on_server, kind = rng.choice(choices)
    return (SERVER if on_server else rng.choice(free_agents)), kind


def timeline(faults: list[Fault]) -> list[Step]:
    """The faults as a time-ordered list of actions, each fault's undo at `at + hold`."""
    steps: list[Step] = []
    for fault in faults:
        undo: Literal["restart", "thaw"] = "restart" if fault.kind == "kill" else "thaw"
        steps.append(Step(fault.at, fault.target, fault.kind))
        steps.append(Step(round(fault.at + fault.hold, 1), fault.target, undo))
    order = {"restart": 0, "thaw": 0, "kill": 1, "freeze": 1}
    return sorted(steps, key=lambda s: (s.at, order[s.action], s.target))
