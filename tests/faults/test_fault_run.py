"""The seeded fault-injection run: kill -9, restart, SIGSTOP and SIGCONT the server and the
agents while every agent posts; after healing, nothing is lost, duplicated, reordered, or
different between any two logs. A short run is part of the test command: about 15 s of faults,
among them the server and an agent each killed and frozen at least once. The soak (minutes)
runs with --soak or GIBBERISH_SOAK=1.

GIBBERISH_FAULT_SEED picks another schedule; GIBBERISH_SOAK_SECONDS sets the soak's length."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.chaos import run_faults
from tests.faults.schedule import KINDS, SERVER
from tests.signaling.conftest import unique_name

SEED = int(os.environ.get("GIBBERISH_FAULT_SEED", "20261126"))


def test_a_short_seeded_fault_run_loses_duplicates_reorders_and_diverges_nothing(
        tmp_path: Path) -> None:
    names = [unique_name(n) for n in ("alice", "bob", "carol", "dave")]
    rooms = [unique_name("room"), unique_name("other")]  # every agent in both rooms at once
    lines: list[str] = []
    report = run_faults(tmp_path, rooms, names, seed=SEED, duration=15.0, every_kind=True,
                        log=lines)
    print("\n".join(lines))
    assert {(f.target == SERVER, f.kind) for f in report.faults} == set(KINDS)
    assert report.counts is not None and report.counts.ok(), "\n".join(lines)
    assert set(report.room_counts) == set(rooms)
    assert all(len(report.room_acknowledged[r]) > 15 for r in rooms)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_soak_of_faults_loses_duplicates_reorders_and_diverges_nothing(
        tmp_path: Path) -> None:
    seconds = float(os.environ.get("GIBBERISH_SOAK_SECONDS", "300"))
    names = [unique_name(n) for n in ("alice", "bob", "carol", "dave", "erin")]
    rooms = [unique_name("room"), unique_name("other")]
    lines: list[str] = []
    report = run_faults(tmp_path, rooms, names, seed=SEED + 1, duration=seconds,
                        heal_timeout=600.0, log=lines)
    print("\n".join(lines))
    assert report.counts is not None and report.counts.ok(), "\n".join(lines)
