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


def test_after_a_fast_fsync_the_next_runs_on_the_loop_and_a_slow_one_sends_it_back(
        tmp_path: Path) -> None:
    """A fast disk: the fsync runs at the end of the loop turn (the turn's posts share it), not
    in a thread; once one is slow (a busy disk), the next goes to the thread again."""
    async def main() -> None:
        with LocalLog(tmp_path / "log.sqlite3") as store:
            threads: list[int] = []  # the thread of each fsync
            real_sync = store.sync

            def watched_sync() -> None:
                threads.append(threading.get_ident())
                real_sync()

            store.sync = watched_sync  # type: ignore[method-assign]
            # Which fsync counts as fast is set, not left to this machine's disk.
            fast, slow = 60.0, 0.0
            group = GroupSync(store, inline_under=fast)

            def post(text: str) -> asyncio.Future[None]:
                store.author_message(ME, "lobby", "alice", text, 0, durable=False)
                group.committed()
                return group.durable()

            loop_thread = threading.get_ident()
            await post("first")  # nothing measured yet: in the thread
            assert threads[0] != loop_thread
            group.inline_under = slow  # the next fsync will be judged slow
            await asyncio.gather(post("second"), post("third"))
            assert len(threads) == 2, "the posts of one turn share an fsync"
            assert threads[1] == loop_thread, "after a fast fsync the next runs on the loop"
            await post("fourth")
            assert threads[2] != loop_thread, "after a slow one the next goes to the thread"
            group.inline_under = fast
            await post("fifth")  # judged by the slow one: in the thread, and fast
            await post("sixth")
            assert threads[4] == loop_thread
            assert not group.unsynced
            await group.close()

    asyncio.run(main())


def test_a_failed_fsync_on_the_loop_fails_the_posts_it_covered(tmp_path: Path) -> None:
    async def main() -> None:
        with LocalLog(tmp_path / "log.sqlite3") as store:
            fail = threading.Event()
            real_sync = store.sync

            def failing_sync() -> None:
                if fail.is_set():
                    raise OSError(5, "Input/output error")
                real_sync()

            store.sync = failing_sync  # type: ignore[method-assign]
            group = GroupSync(store, inline_under=60.0)  # every fsync fast

            def post(text: str) -> asyncio.Future[None]:
                store.author_message(ME, "lobby", "alice", text, 0, durable=False)
                group.committed()
                return group.durable()

            await post("first")  # fast: the next runs on the loop
            fail.set()
            results = await asyncio.gather(post("second"), post("third"),
                                           return_exceptions=True)
            assert all(isinstance(r, OSError) for r in results), results
            assert group.unsynced, "nothing was made durable"
            fail.clear()
            await post("fourth")
            assert not group.unsynced, "the next fsync covers the earlier posts too"
            await group.close()

    asyncio.run(main())
