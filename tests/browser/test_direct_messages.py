"""A direct message between a person in a plain browser and a person on a peer agent: the
agent (one device in every room of its user) opens the DM from its UI's API, the browser opens
the DM's page, and they chat over the one connection their devices share; what the agent says
in its other rooms never reaches the page, and a third user cannot open the DM's page."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import (
    OpenPage,
    browser_texts,
    join_room_page,
    screenshot,
    send_from_page,
    sign_in,
    state_of,
    unique,
)
from tests.browser.stack import Server, start_agent
from tests.helpers import poll

LONG = 60_000  # ms


def test_a_dm_between_a_browser_and_an_agent_over_one_connection(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    lobby = unique("lobby")
    alice = start_agent(server, unique("alice"), lobby, tmp_path / "alice")
    try:
        carol = unique("carol")
        server.register(carol)
        dm = alice.direct(carol)
        room = str(dm["room"])
        assert dm["kind"] == "direct" and room.startswith("dm-")
        assert sorted(dm["members"]) == sorted([alice.name, carol])
        assert [r["name"] for r in alice.room_list()] == [lobby, room]

        page = open_page()
        join_room_page(page, server, carol, room)
        expect(page.locator("header h1, .topbar h1").first).to_have_text(f"@{alice.name}")
        poll(lambda: state_of(page).get(alice.name) == "connected", timeout=60,
             message="the DM page linked to alice's agent")
        alice.send("said in the lobby, not to carol", room=lobby)
        alice.send("hello carol, just us", room=room)
        send_from_page(page, "hello alice")
        poll(lambda: browser_texts(page) == alice.texts(room) and len(alice.texts(room)) == 2,
             timeout=60, message="both messages on both sides, in the same order")
        assert set(alice.texts(room)) == {"hello carol, just us", "hello alice"}
        assert "said in the lobby, not to carol" not in browser_texts(page)
        # One connection between the two devices, carrying the DM only.
        page_device = page.get_attribute("#chat", "data-device")
        links = [link for link in alice.device_links() if link["device"] == page_device]
        assert len(links) == 1 and links[0]["rooms"] == [room]
        screenshot(page, "browser-dm-with-agent")

        # The DM's page is closed to anyone else.
        mallory = unique("mallory")
        server.register(mallory)
        other = open_page()
        sign_in(other, server, mallory, next_path=f"/rooms/{room}")
        expect(other.locator("body")).to_contain_text("not a member", timeout=LONG)
    finally:
        alice.stop()
