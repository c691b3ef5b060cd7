"""The rooms the open pages read (peer_agent/readers.py): a room is read while any page reads it,
its read marker is written when the last page stops reading it, while it is read at most once
per interval however many messages come, when it is left and when the device closes; only for
rooms whose messages were seen as they came."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from peer_agent.readers import Readers


async def turns_until(done: Callable[[], bool], most: int = 100) -> None:
    """Let the event loop turn until `done()`, at most `most` turns."""
    for _ in range(most):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not done within {most} turns of the loop")


def test_a_room_is_read_while_any_page_reads_it_and_marked_when_the_last_stops() -> None:
    async def run() -> list[str]:
        marked: list[str] = []
        readers = Readers(marked.append, interval=60.0)
        readers.read("page 1", "lobby")
        readers.read("page 2", "lobby")
        readers.read("page 2", "games")  # switched room: lobby is still read by page 1
        assert readers.being_read("lobby") and readers.being_read("games")
        readers.seen("lobby")
        await turns_until(lambda: bool(marked))  # the first after a quiet spell, at once
        readers.seen("lobby")
        readers.seen("lobby")
        readers.read("page 2", None)  # games: nothing seen there, nothing to write
        assert marked == ["lobby"]
        readers.read("page 1", None)  # hidden: the last reader of lobby
        assert not readers.being_read("lobby")
        return marked

    assert asyncio.run(run()) == ["lobby", "lobby"]


def test_markers_of_rooms_being_read_are_written_at_most_once_per_interval() -> None:
    async def run() -> list[str]:
        marked: list[str] = []
        readers = Readers(marked.append, interval=0.2)
        readers.read("page", "lobby")
        readers.read("other page", "games")
        loop = asyncio.get_running_loop()
        began = loop.time()
        for _ in range(30):
            readers.seen("lobby")
            readers.seen("games")
            await asyncio.sleep(0.01)
        intervals = (loop.time() - began) // 0.2 + 1
        assert marked[:2] == ["games", "lobby"]  # the first messages, at once
        assert len(marked) <= 2 * intervals < 60, marked  # then once per interval at most
        readers.close()  # the device closes: what is due is written
        readers.read("page", None)  # closing pages after it write nothing
        return marked

    marked = asyncio.run(run())
    assert marked[-2:] == ["games", "lobby"]


def test_a_room_left_is_marked_and_read_by_no_page() -> None:
    async def run() -> list[str]:
        marked: list[str] = []
        readers = Readers(marked.append, interval=60.0)
        readers.read("page", "lobby")
        readers.seen("lobby")
        await turns_until(lambda: bool(marked))
        readers.seen("lobby")
        readers.forget("lobby")
        assert not readers.being_read("lobby")
        readers.read("page", None)
        return marked

    assert asyncio.run(run()) == ["lobby", "lobby"]
