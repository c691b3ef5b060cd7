"""What a receiving agent pays per message in its log and its signature checks (issue 16), call
by call, against the baseline of what it paid before, in the same run and interleaved, so the
ratio holds on a noisy machine:

- storing a received envelope: a commit with `synchronous = NORMAL` (no fsync; survives a
  kill -9) against `synchronous = FULL` (an fsync per commit, as every commit was before);
- the server's `stored` mark for one id, the same two ways;
- an envelope the log already holds arriving again (live, in a sync batch, from the server's
  history): taken because the log holds it (`RoomCore.verify_all`, `LocalLog.holds`) against
  verifying its signature again first;
- this device's own message (`author_message`, still FULL: its seq must survive a power loss),
  for reference.

    .venv/bin/python -m bench.receive_path [--calls 400] [--no-write]

Times are wall-clock per call (median and mean): an fsync costs the event loop its wait even
though it costs little CPU. The log files go in a temporary directory (the system's default)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import machine, write_section
from peer_agent.log import LocalLog
from peer_agent.room_core import RoomCore
from protocol import DeviceKey, Envelope
from protocol.catchup import CatchUp

ROOM = "lobby"


def _timed(into: list[float], call: Callable[..., object], *args: object) -> None:
    started = time.perf_counter()
    call(*args)
    into.append(time.perf_counter() - started)


def _take_as_held(log: LocalLog, core: RoomCore, raw: dict[str, object], now_ms: int,
                  origin: str) -> None:
    """What the agent does now with an envelope it holds: `verify_all`, then the store."""
    log.add_many(core.verify_all([raw], None, now_ms, []), origin)


def _verify_again(log: LocalLog, core: RoomCore, raw: dict[str, object], now_ms: int,
                  origin: str) -> None:
    """The baseline: its signature checked again, then the store finds it held."""
    log.add_many([core.verify(raw, now_ms)], origin)


def _open(path: Path, bob: DeviceKey, synchronous: str) -> LocalLog:
    log = LocalLog(path)
    # The baseline's safety level, set on the log's own connection (outside any transaction).
    log._db.execute(f"PRAGMA synchronous = {synchronous}")
    log.remember_key(bob.device_id, "bob", bob.public_key_b64, "server")
    return log


def measure(calls: int, work: Path) -> list[tuple[str, list[float], list[float] | None]]:
    """(what, seconds per call now, seconds per call in the baseline or None) per row."""
    me, bob = DeviceKey.generate(), DeviceKey.generate()
    now_ms = int(time.time() * 1000)
    envs = [Envelope.create(bob, room=ROOM, author="bob", seq=n, lamport=n, ts=now_ms,
                            text="x" * 100) for n in range(1, calls + 1)]
    origin = f"peer:{bob.device_id}"
    now, before = _open(work / "now.sqlite3", bob, "NORMAL"), _open(work / "before.sqlite3",
                                                                     bob, "FULL")
    rows: list[tuple[str, list[float], list[float] | None]] = []
    try:
        stored: tuple[list[float], list[float]] = ([], [])
        for env in envs:
            _timed(stored[0], now.add_many, [env], origin)
            _timed(stored[1], before.add_many, [env], origin)
        rows.append(("a received envelope stored (one commit): NORMAL vs FULL", *stored))

        marked: tuple[list[float], list[float]] = ([], [])
        for env in envs:
            _timed(marked[0], now.mark_known_by_server, ROOM, {env.id: env.seq})
            _timed(marked[1], before.mark_known_by_server, ROOM, {env.id: env.seq})
        rows.append(("the server's `stored` mark for one id: NORMAL vs FULL", *marked))

        # A fresh core each time: nothing remembered in memory, so the log is what answers.
        again: tuple[list[float], list[float]] = ([], [])
        for env in envs:
            raw = env.to_dict()
            core = RoomCore(ROOM, me.device_id, now, CatchUp())
            _timed(again[0], _take_as_held, now, core, raw, now_ms, origin)
            _timed(again[1], _verify_again, now, core, raw, now_ms, origin)
        rows.append(("an envelope already held arrives again: taken as held vs verified "
                     "again, then deduplicated", *again))

        authored: list[float] = []
        for n in range(calls):
            _timed(authored, now.author_message, me, ROOM, "me", f"message {n}", now_ms)
        rows.append(("this device's own message (`author_message`, FULL)", authored, None))
    finally:
        now.close()
        before.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receive_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gibberish-receive-") as work:
        rows = measure(args.calls, Path(work))

    def us(samples: list[float]) -> str:
        return f"{statistics.median(samples) * 1e6:,.0f} / {statistics.fmean(samples) * 1e6:,.0f}"

    lines = [
        "## A receiver's log and signature checks per message (`bench/receive_path.py`)",
        "",
        f"`python -m bench.receive_path --calls {args.calls}`: {machine('cryptography')}; each "
        "row's two ways interleaved call by call in one process, wall-clock µs per call "
        "(median / mean).",
        "",
        "| per call | now µs | baseline µs | ratio (median) |",
        "|---|---:|---:|---:|",
    ]
    for what, now, before in rows:
        if before is None:
            lines.append(f"| {what} | {us(now)} | – | – |")
        else:
            ratio = statistics.median(before) / statistics.median(now)
            lines.append(f"| {what} | {us(now)} | {us(before)} | {ratio:.1f}× |")
    print("\n".join(lines))
    if not args.no_write:
        print(f"written to {write_section('receive_path', chr(10).join(lines))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
