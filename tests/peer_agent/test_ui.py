"""The UI's live pushes on a real aiohttp server and WebSocket: every message is shown, and of
the state pushes made in one turn of the event loop only the last is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from peer_agent.ui import ChatUI


class Backend:
    """A chat backend whose only live part is its state (the pushes under test)."""

    def state(self) -> dict[str, Any]:
        return {"n": 0}

    def messages_page(self, before: str | None, limit: int) -> dict[str, Any]:
        return {"messages": [], "older": None}

    async def post_message(self, text: str) -> dict[str, Any]:
        return {}

    def events(self, limit: int) -> dict[str, Any]:
        return {"events": []}

    def note(self, text: str) -> dict[str, Any]:
        return {}

    def message_path(self, message_id: str) -> dict[str, Any]:
        return {}


def test_every_message_is_pushed_and_only_the_last_state_of_a_turn() -> None:
    async def main() -> list[dict[str, Any]]:
        ui = ChatUI(Backend())
        await ui.start()
        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    f"{ui.url}ws") as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "state"  # on connect
                while not ui._sockets:
                    await asyncio.sleep(0.01)
                # One turn, as the agent spawns them: states around two messages.
                pushes = [{"type": "state", "state": {"n": 1}},
                          {"type": "message", "message": {"id": "a:1"}},
                          {"type": "state", "state": {"n": 2}},
                          {"type": "message", "message": {"id": "a:2"}},
                          {"type": "state", "state": {"n": 3}}]
                await asyncio.gather(*(ui.publish(p) for p in pushes))
                await ui.publish({"type": "event", "event": {"kind": "end"}})
                got = []
                while not got or got[-1]["type"] != "event":
                    got.append(await ws.receive_json(timeout=10))
                return got
        finally:
            await ui.close()

    got = asyncio.run(main())
    assert [g["message"]["id"] for g in got if g["type"] == "message"] == ["a:1", "a:2"]
    assert [g["state"]["n"] for g in got if g["type"] == "state"] == [3]
