"""The path journal: steps show at once, reach the log in batches written off the event loop,
and none is lost or shown twice on the way. A real SQLite log; the event loop is a real one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from peer_agent.log import LocalLog, PathStep
from peer_agent.records import FLUSH_BATCH, PathJournal

ROOM = "lobby"


async def wait_until(done: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the loop run until `done()` holds, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_steps_show_at_once_and_reach_the_log_from_a_worker_thread(tmp_path: Path) -> None:
    writers: set[str] = set()

    async def main() -> None:
        with LocalLog(tmp_path / "log.sqlite3") as store:
            add = store.add_path_steps

            def add_and_note(room: str, steps: Iterable[PathStep]) -> None:
                writers.add(threading.current_thread().name)
                add(room, steps)

            store.add_path_steps = add_and_note  # type: ignore[method-assign]
            journal = PathJournal(store, ROOM, flush_interval=0.05)
            journal.start()
            journal.record("d:1", "received", via="channel")
            assert [s["what"] for s in journal.steps("d:1")] == ["received"]
            await wait_until(lambda: store.path(ROOM, "d:1"))
            assert [s["what"] for s in journal.steps("d:1")] == ["received"]
            assert writers and threading.current_thread().name not in writers
            journal.record("d:1", "acked")
            await journal.close()  # writes what is left, on the closing thread
            assert [s.what for s in store.path(ROOM, "d:1")] == ["received", "acked"]

    asyncio.run(main())


def test_a_full_batch_is_written_without_waiting_out_the_interval(tmp_path: Path) -> None:
    async def main() -> None:
        with LocalLog(tmp_path / "log.sqlite3") as store:
            journal = PathJournal(store, ROOM, flush_interval=60.0)
            journal.start()
            for n in range(FLUSH_BATCH):
                journal.record(f"d:{n + 1}", "received")
            await wait_until(lambda: store.path(ROOM, f"d:{FLUSH_BATCH}"))
            assert all(len(journal.steps(f"d:{n + 1}")) == 1 for n in range(FLUSH_BATCH))
            await journal.close()

    asyncio.run(main())
