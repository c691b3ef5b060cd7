"""`python -m demo --faults [--step]`: the guided fault demo, run in a fresh data dir (the story
needs fresh accounts) and summed up at the end. Exit 0 only if every step reached its expected
state (demo/story.py tells the steps)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from demo.story import Outcome, Story
from launcher import ChildError, HttpError, stop_all


def summary(startup: float, outcomes: list[Outcome], titles: list[str]) -> bool:
    """Print each step's time and the total; True if every step reached its state."""
    total = len(titles)
    rows = [("start-up: the server and three agents", startup, "")]
    rows += [(f"Step {o.number}/{total}: {o.title}", o.seconds,
              "reached" if o.failure is None else "FAILED") for o in outcomes]
    width = max(len(label) for label, _, _ in rows)
    print("\nSummary")
    for label, seconds, mark in rows:
        print(f"  {label:<{width}}  {seconds:5.1f} s  {mark}".rstrip())
    for number in range(len(outcomes) + 1, total + 1):
        print(f"  Step {number}/{total}: {titles[number - 1]}: not run")
    print(f"  {'total':<{width}}  {startup + sum(o.seconds for o in outcomes):5.1f} s")
    failed = [o for o in outcomes if o.failure is not None]
    if failed:
        print(f"FAILED at step {failed[0].number}/{total} ({failed[0].title}): "
              f"{failed[0].failure}")
        return False
    print(f"All {total} steps reached their expected state.", flush=True)
    return True


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def data_dir(given: Path | None) -> tuple[Path, bool]:
    """The run's data dir and whether it is a temporary one: the story needs fresh accounts,
    so a given dir must be empty (or not exist yet)."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="gibberish-demo-faults-")), True
    if given.exists() and any(given.iterdir()):
        raise SystemExit(f"--data-dir {given} is not empty: the fault demo needs fresh "
                         f"accounts; give an empty or new dir, or leave --data-dir out")
    given.mkdir(parents=True, exist_ok=True)
    return given, False


def run_faults(args: argparse.Namespace) -> int:
    data, temporary = data_dir(args.data_dir)
    story = Story(data, temporary, args.port, args.room, args.timeout)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)
    code = 130  # until the story has run: Ctrl-C (or SIGTERM) stops it half way
    print(f"Guided fault demo: {len(story.steps)} steps, each checked within "
          f"{args.timeout:g} s.", flush=True)
    try:
        started = time.monotonic()
        try:
            story.start()
        except (ChildError, HttpError) as exc:
            print(f"start-up failed: {exc}", file=sys.stderr)
            code = 1
            return code
        startup = time.monotonic() - started
        outcomes = story.run(stepping=args.step)
        code = 0 if summary(startup, outcomes, [title for title, _, _ in story.steps]) else 1
        if args.step or args.stay:
            print("Everything keeps running for a look around; Ctrl-C stops it all.",
                  flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        if code == 130:
            print("\ninterrupted", flush=True)
    finally:
        # A second Ctrl-C must not leave children behind: ignore it while they stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping the server and the agents ...", flush=True)
        stop_all(story.processes())
        for sig, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to restore
                signal.signal(sig, handler)
        finish_dir(data, temporary, keep=args.keep or code != 0)
    return code


def finish_dir(data: Path, temporary: bool, keep: bool) -> None:
    if temporary and not keep:
        shutil.rmtree(data, ignore_errors=True)
    elif os.path.isdir(data):
        print(f"Data and logs kept in {data}", flush=True)
