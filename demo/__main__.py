"""`python -m demo`: a server and three agents (alice, bob, carol) in one room, all on this
machine, their UI addresses printed. Ctrl-C stops everything.

State lives in `--data-dir` (default `instance/demo`), so a second run finds the same
accounts, keys and logs. WebRTC is pinned to 127.0.0.1 unless `--real-interfaces` is given.

`--faults` runs the guided fault demo instead (demo/faults.py, demo/story.py): in a fresh data
dir, the server and a peer are killed and brought back, step by step, each step checked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.faults import run_faults
from demo.room import run_room


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the server's database, the agents' data and the logs live "
                             "(default: instance/demo; with --faults a fresh temporary dir)")
    parser.add_argument("--port", type=int, default=5000, help="server port (0: a free one)")
    parser.add_argument("--room", default="lobby")
    parser.add_argument(
        "--real-interfaces", action="store_true",
        help="let the agents use the machine's real interfaces for WebRTC instead of pinning it "
             "to 127.0.0.1, so that an ordinary browser on this machine (/rooms/<room>) can "
             "reach them; WebRTC packets then go to this machine's own LAN address")
    faults = parser.add_argument_group("guided fault demo")
    faults.add_argument("--faults", action="store_true",
                        help="walk through the fault story in numbered, checked steps: the "
                             "server and a peer are killed (-9) and come back, a second device "
                             "signs in; exit 0 only if every step reached its expected state")
    faults.add_argument("--step", action="store_true",
                        help="wait for Enter before each step, and keep everything running at "
                             "the end until Ctrl-C")
    faults.add_argument("--stay", action="store_true",
                        help="keep everything running at the end until Ctrl-C")
    faults.add_argument("--keep", action="store_true",
                        help="keep the temporary data dir (logs, databases) at the end")
    faults.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long each step (and the start-up) may take to reach its "
                             "expected state (default 60)")
    args = parser.parse_args(argv)
    if args.faults and args.real_interfaces:
        parser.error("--faults keeps everything on loopback: drop --real-interfaces")
    if not args.faults:
        used = [f"--{name}" for name in ("step", "stay", "keep") if getattr(args, name)]
        if used:
            parser.error(f"{', '.join(used)}: only with --faults")
    if args.timeout <= 0:
        parser.error("--timeout must be greater than 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_faults(args) if args.faults else run_room(args)


if __name__ == "__main__":
    sys.exit(main())
