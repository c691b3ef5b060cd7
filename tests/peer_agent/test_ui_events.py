"""The UI's live events over a real aiohttp WebSocket: the events posted in one turn of the
agent's loop leave in one frame (a batch, in the order posted), a lone event as itself; an
event saying how things stand is built as the frame leaves, once; a few frames leave at once,
a busy spell of delivery marks and states beyond that budget waits and leaves as one batch,
and a message never waits for the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from launcher import ui_events
from peer_agent.ui import UI_FLUSH_BURST, ChatUI


class OneRoom:
    """The least of a backend the WebSocket needs: one room's state."""

    def rooms_list(self) -> list[dict[str, Any]]:
        return [{"name": "lobby", "kind": "public", "unread": 0, "server": True}]

    def state(self, room: str | None = None) -> dict[str, Any]:
        return {"room": "lobby"}

    def reading(self, page: object, room: str | None) -> None:
        """A page's room, told as it reads one or as its socket closes: nothing to keep."""


async def _frames() -> list[dict[str, Any]]:
    ui = ChatUI(OneRoom())  # type: ignore[arg-type]
    await ui.start()
    try:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"http://127.0.0.1:{ui.port}/ws") as ws:
            hello = [await ws.receive_json(timeout=5) for _ in range(2)]
            assert [f["type"] for f in hello] == ["state", "rooms"]
            for n in range(5):  # one turn: five events
                ui.post({"type": "message", "n": n})
            first = await ws.receive_json(timeout=5)
            ui.post({"type": "message", "n": 5})  # a turn of its own
            second = await ws.receive_json(timeout=5)
            return [first, second]
    finally:
        await ui.close()


def test_one_turns_events_leave_in_one_frame_in_order() -> None:
    first, second = asyncio.run(_frames())
    assert first["type"] == "batch"
    assert [e["n"] for e in ui_events(first)] == [0, 1, 2, 3, 4]
    assert second == {"type": "message", "n": 5}
    assert ui_events(second) == [second]


async def _latest_frames() -> tuple[list[dict[str, Any]], int]:
    """Three messages and a rooms list asked for after each, in one turn; then the list
    alone. The frames, and how many times the list was built."""
    ui = ChatUI(OneRoom())  # type: ignore[arg-type]
    built = 0

    def rooms() -> dict[str, Any]:
        nonlocal built
        built += 1
        return {"type": "rooms", "unread": built}

    await ui.start()
    try:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"http://127.0.0.1:{ui.port}/ws") as ws:
            for _ in range(2):
                await ws.receive_json(timeout=5)
            for n in range(3):
                ui.post({"type": "message", "n": n})
                ui.post_latest("rooms", rooms)
            first = await ws.receive_json(timeout=5)
            ui.post_latest("rooms", rooms)
            second = await ws.receive_json(timeout=5)
            return [first, second], built
    finally:
        await ui.close()


def test_a_state_event_is_built_once_as_the_frame_leaves_after_the_messages() -> None:
    """The rooms list (unread counts) asked for with each message goes in the messages' frame,
    built once, after every message: each message is still shown, and no frame more."""
    (first, second), built = asyncio.run(_latest_frames())
    assert first["type"] == "batch"
    assert ui_events(first) == [{"type": "message", "n": 0}, {"type": "message", "n": 1},
                                {"type": "message", "n": 2}, {"type": "rooms", "unread": 1}]
    assert second == {"type": "rooms", "unread": 2}
    assert built == 2


async def _turns(turns: int, interval: float,
                 last: str | None = None) -> list[dict[str, Any]]:
    """Delivery marks posted in `turns` turns of the loop, one each, a page reading them
    meanwhile; then, if `last` names a type, two events of it, each read before the next."""
    ui = ChatUI(OneRoom(), flush_interval=interval)  # type: ignore[arg-type]
    await ui.start()
    try:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"http://127.0.0.1:{ui.port}/ws") as ws:
            for _ in range(2):
                await ws.receive_json(timeout=5)
            frames = []
            for n in range(UI_FLUSH_BURST):  # within the budget: each leaves on its own
                ui.post({"type": "delivery", "n": n})
                frames.append(await ws.receive_json(timeout=5))
            for n in range(UI_FLUSH_BURST, turns):  # beyond it: they wait, together
                ui.post({"type": "delivery", "n": n})
                await asyncio.sleep(0)
            if last is not None:  # two, in turns of their own
                for n in (turns, turns + 1):
                    ui.post({"type": last, "n": n})
                    frames.append(await ws.receive_json(timeout=min(interval * 5, 5)))
            elif turns > UI_FLUSH_BURST:
                frames.append(await ws.receive_json(timeout=interval * 5))
            return frames
    finally:
        await ui.close()


def test_lone_events_leave_at_once_within_the_budget() -> None:
    """Events in turns of their own (a message just after a delivery mark and a state push)
    each leave at once, not a flush interval after the frame before: a long interval would
    make the test time out."""
    frames = asyncio.run(_turns(UI_FLUSH_BURST, interval=10.0))
    assert frames == [{"type": "delivery", "n": n} for n in range(UI_FLUSH_BURST)]


def test_a_busy_spell_beyond_the_budget_leaves_as_one_batch_in_order() -> None:
    frames = asyncio.run(_turns(UI_FLUSH_BURST + 3, interval=0.3))
    assert len(frames) == UI_FLUSH_BURST + 1
    assert frames[-1]["type"] == "batch"
    assert [e["n"] for e in ui_events(frames[-1])] == list(range(UI_FLUSH_BURST,
                                                                 UI_FLUSH_BURST + 3))


def test_a_message_leaves_at_once_beyond_the_budget_with_what_waited() -> None:
    """Beyond the budget delivery marks wait for it (10 s here, longer than the test's read
    time-out); a message posted then leaves at the end of its turn, after them, in one frame;
    so does a message after it, while the budget is still spent."""
    frames = asyncio.run(_turns(UI_FLUSH_BURST + 2, interval=10.0, last="message"))
    assert len(frames) == UI_FLUSH_BURST + 2
    assert ui_events(frames[-2]) == [{"type": "delivery", "n": UI_FLUSH_BURST},
                                     {"type": "delivery", "n": UI_FLUSH_BURST + 1},
                                     {"type": "message", "n": UI_FLUSH_BURST + 2}]
    assert frames[-1] == {"type": "message", "n": UI_FLUSH_BURST + 3}
