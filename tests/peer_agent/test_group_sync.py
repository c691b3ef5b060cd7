"""Group commit of this device's own posts: a post is let go (sent, answered) only after an
fsync that began after its commit, and posts committed while one runs share the next. A real
SQLite log and a real event loop; the fsync is held back to catch the posts in between."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from peer_agent.group_sync import GroupSync
from peer_agent.log import LocalLog
from protocol import DeviceKey

ME = DeviceKey.generate()


async def wait_until(done: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_posts_committed_during_an_fsync_wait_for_the_next_and_share_it(
        tmp_path: Path) -> None:
    async def main() -> None:
        with LocalLog(tmp_path / "log.sqlite3") as store:
            syncs: list[int] = []  # how many posts the log held when each fsync began
            release = [threading.Event(), threading.Event()]
            real_sync = store.sync

            def held_sync() -> None:
                syncs.append(store.count("lobby"))
                release[len(syncs) - 1].wait(10)
                real_sync()

            store.sync = held_sync  # type: ignore[method-assign]
            group = GroupSync(store)

            def post(text: str) -> asyncio.Future[None]:
                store.author_message(ME, "lobby", "alice", text, 0, durable=False)
                group.committed()
                return group.durable()

            first = post("first")
            await wait_until(lambda: syncs)
            second, third = post("second"), post("third")
            assert group.unsynced
            release[0].set()
            await first
            assert not second.done() and not third.done(), "their commits came after"
            release[1].set()
            await asyncio.gather(second, third)
            assert syncs == [1, 3], "one fsync for the two posts made while the first ran"
            assert not group.unsynced
            assert group.durable().done(), "nothing to wait for once all are synced"
            await group.close()

    asyncio.run(main())
