"""The agent's local log (peer_agent/log.py) in a long room: every operation a message, an
upload round or a sync answer makes, timed in a room of `--small` messages and in one of
`--messages`, side by side. A chat's work per message must not grow with the room it is in:
an operation that costs several times more in the long room is flagged.

Two such operations were found this way and fixed (issue 16): reading the next upload batch
walked the room's messages in display order to find the outbox's (33 ms an upload round in a
room of 100,000), and marking a room read read the room's last rowid by walking its rows
(6.6 ms). Operations made once when a room is opened are listed apart.

    .venv/bin/python -m bench.log_ops [--messages 100000] [--small 100] [--repeat 20]
                                      [--no-write]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import machine, write_section
from peer_agent.log import LocalLog, PathStep
from protocol import DeviceKey, Envelope

ROOM = "lobby"
DEVICES = 4
GROWS = 3.0  # flagged when the long room costs this many times the short one, and 20 µs more


class Room:
    """A fresh log holding `size` messages of DEVICES devices (from the server, each with a
    path step), and what the timed operations need."""

    def __init__(self, directory: Path, size: int, keys: list[DeviceKey]) -> None:
        self.log = LocalLog(directory / "log.sqlite3")
        self.keys = keys
        self.size = size
        envs = [self.envelope(i, "x" * 100) for i in range(size)]
        for start in range(0, size, 500):
            self.log.add_many(envs[start:start + 500], "server")
        self.log.add_path_steps(ROOM, [PathStep(e.id, 1, "received", {"via": "server"})
                                       for e in envs])
        self.first = envs[0]
        self.vector = self.log.vector(ROOM)
        self.next = size

    def envelope(self, i: int, text: str) -> Envelope:
        return Envelope.create(self.keys[i % DEVICES], room=ROOM, author="alice",
                               seq=i // DEVICES + 1, lamport=i + 1, ts=1_700_000_000_000 + i,
                               text=text)

    def live(self) -> None:
        """One message more from a peer, as a live frame brings it."""
        env = self.envelope(self.next, "live")
        self.next += 1
        self.log.add_many([env], f"peer:{self.keys[1].device_id}")

    def operations(self) -> dict[str, Callable[[], object]]:
        log, first = self.log, self.first
        return {
            "store a live message (`add_many`, one envelope from a peer)": self.live,
            "what is held of a frame (`holds_each`, one envelope)":
                lambda: log.holds_each([first]),
            "the version vector (`vector`)": lambda: log.vector(ROOM),
            "the gaps to pull (`gaps`)": lambda: log.gaps(ROOM),
            "the newest page for the UI (`page`, 50)": lambda: log.page(ROOM),
            "the next upload batch (`outbox_pending`)":
                lambda: log.outbox_pending(ROOM, 100, 2**53),
            "the server holds it? (`on_server`)": lambda: log.on_server(ROOM, first.id),
            "a stored notice (`mark_known_by_server`, one id)":
                lambda: log.mark_known_by_server(ROOM, {first.id: 1}),
            "mark the room read (`mark_read`)": lambda: log.mark_read(ROOM),
            "one message's path (`path`)": lambda: log.path(ROOM, first.id),
            "a sync answer to a peer in step (`missing_for`)":
                lambda: log.missing_for(ROOM, self.vector, limit=100),
            "the server cursor (`server_cursor`)": lambda: log.server_cursor(ROOM),
        }

    def on_open(self) -> dict[str, Callable[[], object]]:
        log = self.log
        return {
            "unread count (`unread`)": lambda: log.unread(ROOM),
            "rooms held (`rooms`)": log.rooms,
        }


def best_us(operation: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        operation()
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def rows(small: Room, large: Room, pick: Callable[[Room], dict[str, Callable[[], object]]],
         repeat: int) -> list[str]:
    out = []
    for (name, short_op), long_op in zip(pick(small).items(), pick(large).values(),
                                         strict=True):
        short, long = best_us(short_op, repeat), best_us(long_op, repeat)
        grows = long > GROWS * short + 20
        out.append(f"| {name} | {short:,.1f} | {long:,.1f} | {long / short:.1f} | "
                   f"{'grows with the room' if grows else 'flat'} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.log_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="the long room")
    parser.add_argument("--small", type=int, default=100, help="the short room")
    parser.add_argument("--repeat", type=int, default=20, help="best of this many calls")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    keys = [DeviceKey.generate() for _ in range(DEVICES)]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        small, large = Room(Path(a), args.small, keys), Room(Path(b), args.messages, keys)
        head = (f"| operation | {args.small:,} messages, µs | {args.messages:,} messages, µs "
                "| ratio | |\n|---|---:|---:|---:|---|")
        lines = [
            "## The local log in a long room (`bench/log_ops.py`)",
            "",
            f"`python -m bench.log_ops --messages {args.messages} --small {args.small}`: the "
            f"agent's SQLite log (peer_agent/log.py) holding {args.small:,} and "
            f"{args.messages:,} messages of {DEVICES} devices, each operation the best of "
            f"{args.repeat} calls. {machine()}; 1-minute load average "
            f"{os.getloadavg()[0]:.1f}.",
            "",
            "Per message, upload round or sync answer:",
            "",
            head,
            *rows(small, large, Room.operations, args.repeat),
            "",
            "Once when a room is opened:",
            "",
            head,
            *rows(small, large, Room.on_open, args.repeat),
        ]
        small.log.close()
        large.log.close()
    print("\n".join(lines))
    if not args.no_write:
        print(f"written to {write_section('log-ops', chr(10).join(lines))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
