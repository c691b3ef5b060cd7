"""Seeded fault schedules: which process to hurt, how, when, and for how long. Pure code: the
same seed, duration and targets always give the same schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

SERVER = "server"
Kind = Literal["kill", "freeze"]


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
                  ) -> list[Fault]:
    """Faults over `duration` seconds, about one every `mean_gap` seconds (exponential gaps).

    The server is the target of about `server_share` of them, the agents share the rest;
    kills and freezes are equally likely. A process is hurt again only a second after it was
    healed, so faults on one process never overlap; faults on different processes do.
    """
    rng = random.Random(seed)
    healed_at = {name: 0.0 for name in [SERVER, *agents]}
    faults: list[Fault] = []
    at = rng.uniform(1.0, mean_gap)
    while at < duration:
        target = SERVER if rng.random() < server_share else rng.choice(agents)
        if healed_at[target] + 1.0 <= at:
            kind: Kind = "kill" if rng.random() < 0.5 else "freeze"
            length = round(rng.uniform(*hold), 1)
            faults.append(Fault(round(at, 1), target, kind, length))
            healed_at[target] = at + length
        at += rng.expovariate(1.0 / mean_gap)
    return faults


def timeline(faults: list[Fault]) -> list[Step]:
    """The faults as a time-ordered list of actions, each fault's undo at `at + hold`."""
    steps: list[Step] = []
    for fault in faults:
        undo: Literal["restart", "thaw"] = "restart" if fault.kind == "kill" else "thaw"
        steps.append(Step(fault.at, fault.target, fault.kind))
        steps.append(Step(round(fault.at + fault.hold, 1), fault.target, undo))
    order = {"restart": 0, "thaw": 0, "kill": 1, "freeze": 1}
    return sorted(steps, key=lambda s: (s.at, order[s.action], s.target))
