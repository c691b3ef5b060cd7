"""The UI's live events over a real aiohttp WebSocket: the events posted in one turn of the
agent's loop leave in one frame (a batch, in the order posted), a lone event as itself."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from launcher import ui_events
from peer_agent.ui import ChatUI


class OneRoom:
    """The least of a backend the WebSocket needs: one room's state."""

    def rooms_list(self) -> list[dict[str, Any]]:
        return [{"name": "lobby", "kind": "public", "unread": 0, "server": True}]

    def state(self, room: str | None = None) -> dict[str, Any]:
        return {"room": "lobby"}


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
