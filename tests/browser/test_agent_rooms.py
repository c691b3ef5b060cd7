"""The room list of the agent's own page in real Chromium, used as a person would: every room
with its kind and unread count, switching rooms without a reload, joining, creating and
leaving rooms, and a direct message between two agents, at desktop and phone sizes."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import (
    PHONE,
    SCREENSHOTS,
    OpenPage,
    browser_texts,
    screenshot,
    unique,
)
from tests.browser.stack import Agent, Server
from tests.browser.test_agent_ui import open_ui, start_pair, type_message
from tests.helpers import poll

LONG = 60_000  # ms: generous, the 2-core machine is shared
MARK_READ = re.compile(r"/api/rooms/[^/?]+/read$")
# The page hidden (true) or in view again (false), as the browser says when its tab goes to
# the background and back: headless Chromium keeps a page in view.
SET_HIDDEN = """(hidden) => {
  const state = hidden ? "hidden" : "visible";
  for (const [name, value] of [["hidden", hidden], ["visibilityState", state]]) {
    Object.defineProperty(document, name, { configurable: true, get: () => value });
  }
  document.dispatchEvent(new Event("visibilitychange"));
}"""
# The rooms the page told its agent it reads, in order (window.__reading).
WATCH_READING = """
(() => {
  window.__reading = [];
  const native = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const frame = typeof data === "string" && data.includes('"reading"') ? JSON.parse(data) : null;
    if (frame && frame.type === "reading") window.__reading.push(frame.room);
    return native.call(this, data);
  };
})();
"""


@dataclass
class Rooms:
    """Two agents linked to each other, both in the public rooms `first` and `second`."""

    first: str
    second: str
    alice: Agent
    bob: Agent


@pytest.fixture
def rooms(server: Server, tmp_path: Path) -> Iterator[Rooms]:
    pair = start_pair(server, tmp_path)
    try:
        second = unique("second")
        pair.alice.join(second)
        pair.bob.join(second)
        yield Rooms(pair.room, second, pair.alice, pair.bob)
    finally:
        pair.alice.stop()
        pair.bob.stop()


def entry(page: Page, room: str) -> Locator:
    """The room's entry in the page's room list."""
    return page.locator(f"#room-list .room-entry[data-room='{room}']")


def badge(page: Page, room: str) -> Locator:
    return entry(page, room).locator(".unread")


def open_room(page: Page, room: str) -> None:
    """Choose `room` in the list (through the "Rooms" button on a phone) and wait until the
    page shows it."""
    if page.locator("#rooms-toggle").is_visible() and not entry(page, room).is_visible():
        page.click("#rooms-toggle")
    entry(page, room).click()
    expect(entry(page, room)).to_have_attribute("aria-current", "true")


def unread(agent: Agent, room: str) -> int:
    counts = {r["name"]: r["unread"] for r in agent.room_list()}
    return int(counts[room])


def screenshot_phone_panel(page: Page, name: str) -> Path:
    """The phone-sized page with its room list opened."""
    before = page.viewport_size
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.click("#rooms-toggle")
    expect(page.locator("#rooms-panel")).to_be_visible()
    path = SCREENSHOTS / f"{name}-phone.png"
    page.screenshot(path=str(path))
    page.click("#rooms-toggle")
    expect(page.locator("#rooms-panel")).to_be_hidden()
    if before is not None:
        page.set_viewport_size(before)
    return path


def test_room_list_shows_every_room_with_its_kind_and_the_room_shown(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    secret = unique("secret")
    rooms.alice.join(secret, private=True)
    direct = rooms.alice.direct(rooms.bob.name)["room"]
    page = open_ui(open_page, rooms.alice)
    names = page.locator("#room-list .room-entry")
    expect(names).to_have_count(4, timeout=LONG)
    assert [e.get_attribute("data-room") for e in names.all()] == [
        rooms.first, rooms.second, secret, direct]
    assert [e.get_attribute("data-kind") for e in names.all()] == [
        "public", "public", "private", "direct"]
    expect(entry(page, rooms.first).locator(".room-name")).to_have_text(f"#{rooms.first}")
    expect(entry(page, secret).locator(".room-kind")).to_have_text("private")
    # A direct message is named after the other user, not its server-made name.
    expect(entry(page, direct).locator(".room-name")).to_have_text(f"@{rooms.bob.name}")
    # The first room is shown, and only it is highlighted.
    expect(page.locator("#room-list [aria-current='true']")).to_have_count(1)
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true")
    expect(page.locator("#room-title")).to_have_text(f"#{rooms.first}")
    expect(page.locator("#room-kind")).to_be_hidden()
    # Under the list, the device's links: one to bob's device, carrying both rooms they share.
    link = page.locator("#device-links .device-link")
    expect(link).to_have_count(1, timeout=LONG)
    expect(link).to_have_attribute("data-device", rooms.bob.device)
    expect(link).to_have_attribute("data-state", "connected")
    expect(link.locator(".device-link-rooms")).to_have_text(f"#{rooms.first}, #{rooms.second}")
    screenshot(page, "agent-rooms-list")
    screenshot_phone_panel(page, "agent-rooms-panel")
    open_room(page, direct)
    expect(page.locator("#room-title")).to_have_text(f"@{rooms.bob.name}")
    expect(page.locator("#room-kind")).to_have_text("direct")
    # The address names the room shown: a reload comes back to it.
    page.reload()
    expect(entry(page, direct)).to_have_attribute("aria-current", "true", timeout=LONG)
    expect(page.locator("#room-title")).to_have_text(f"@{rooms.bob.name}")


def test_unread_count_rises_for_another_room_and_clears_when_it_is_opened(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    page = open_ui(open_page, rooms.alice)
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true", timeout=LONG)
    expect(badge(page, rooms.second)).to_be_hidden()
    rooms.bob.send("first in the second room", room=rooms.second)
    expect(badge(page, rooms.second)).to_have_text("1", timeout=LONG)
    rooms.bob.send("second in the second room", room=rooms.second)
    rooms.bob.send("third in the second room", room=rooms.second)
    expect(badge(page, rooms.second)).to_have_text("3", timeout=LONG)
    expect(badge(page, rooms.first)).to_be_hidden()
    # The other room's message did not land in the room shown.
    expect(page.locator("#messages .message")).to_have_count(0)
    assert unread(rooms.alice, rooms.second) == 3
    # On a phone the "Rooms" button carries the count of the rooms not shown.
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    expect(page.locator("#rooms-toggle-unread")).to_have_text("3")
    screenshot(page, "agent-rooms-unread")

    open_room(page, rooms.second)
    expect(page.locator("#messages .text")).to_have_text(
        ["first in the second room", "second in the second room", "third in the second room"],
        timeout=LONG)
    expect(badge(page, rooms.second)).to_be_hidden()
    expect(page.locator("#rooms-toggle-unread")).to_be_hidden()
    poll(lambda: unread(rooms.alice, rooms.second) == 0, timeout=30,
         message="opening the room marked it read")
    # A message arriving in the room shown, with the page in view, is read at once.
    rooms.bob.send("while you look", room=rooms.second)
    expect(page.locator("#messages .text").last).to_have_text("while you look", timeout=LONG)
    poll(lambda: unread(rooms.alice, rooms.second) == 0, timeout=30,
         message="the message seen was marked read")
    # ...and one arriving in the room left raises its badge.
    rooms.bob.send("back in the first room", room=rooms.first)
    expect(badge(page, rooms.first)).to_have_text("1", timeout=LONG)
    expect(page.locator("#rooms-toggle-unread")).to_have_text("1")


def test_rooms_are_joined_created_private_and_left_from_the_page(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    page = open_ui(open_page, rooms.alice)
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true", timeout=LONG)
    # Joining a public room by name: it is listed, shown, and the agent is in it.
    lobby = unique("lobby")
    page.fill("#join-name", lobby)
    page.click("#join-form button[type=submit]")
    expect(entry(page, lobby)).to_have_attribute("aria-current", "true", timeout=LONG)
    expect(page.locator("#room-title")).to_have_text(f"#{lobby}")
    expect(page.locator("#join-name")).to_have_value("")
    type_message(page, "hello lobby")
    expect(page.locator("#messages .text")).to_have_text(["hello lobby"], timeout=LONG)
    assert rooms.alice.texts(room=lobby) == ["hello lobby"]
    assert "hello lobby" not in rooms.alice.texts(room=rooms.first)

    # Creating a private room: its kind is said in the list and beside the title.
    hideout = unique("hideout")
    page.fill("#join-name", hideout)
    page.check("#join-private")
    page.click("#join-form button[type=submit]")
    expect(entry(page, hideout)).to_have_attribute("aria-current", "true", timeout=LONG)
    expect(entry(page, hideout)).to_have_attribute("data-kind", "private")
    expect(page.locator("#room-kind")).to_have_text("private")
    expect(page.locator("#join-private")).not_to_be_checked()
    assert {r["name"]: r["kind"] for r in rooms.alice.room_list()}[hideout] == "private"

    # Someone else's private room is refused, in the server's words, and not listed.
    bobs = unique("bobs")
    rooms.bob.join(bobs, private=True)
    page.fill("#join-name", bobs)
    page.click("#join-form button[type=submit]")
    expect(page.locator("#rooms-error")).to_be_visible(timeout=LONG)
    expect(page.locator("#rooms-error")).to_contain_text("private")
    expect(entry(page, bobs)).to_have_count(0)
    expect(entry(page, hideout)).to_have_attribute("aria-current", "true")
    # A name the agent refuses says why too.
    page.fill("#join-name", "no spaces here")
    page.click("#join-form button[type=submit]")
    expect(page.locator("#rooms-error-text")).to_contain_text("room name", timeout=LONG)
    screenshot(page, "agent-rooms-join-refused")

    # Leaving the room shown: it goes from the list and from the agent, the first room shows.
    page.click("#leave-room")
    expect(entry(page, hideout)).to_have_count(0, timeout=LONG)
    expect(page.locator("#rooms-error")).to_be_hidden()
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true", timeout=LONG)
    assert hideout not in {r["name"] for r in rooms.alice.room_list()}
    open_room(page, lobby)
    expect(page.locator("#messages .text")).to_have_text(["hello lobby"], timeout=LONG)


def test_leaving_every_room_leaves_the_page_ready_to_join_one(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    rooms.alice.leave(rooms.second)
    page = open_ui(open_page, rooms.alice)
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true", timeout=LONG)
    page.click("#leave-room")
    expect(page.locator("#room-list .room-entry")).to_have_count(0, timeout=LONG)
    expect(page.locator("#empty-chat")).to_contain_text("no room")
    expect(page.locator("#composer")).to_be_hidden()
    expect(page.locator("#leave-room")).to_be_hidden()
    assert rooms.alice.room_list() == []
    screenshot(page, "agent-rooms-none")
    page.fill("#join-name", rooms.second)
    page.click("#join-form button[type=submit]")
    expect(entry(page, rooms.second)).to_have_attribute("aria-current", "true", timeout=LONG)
    expect(page.locator("#composer")).to_be_visible()
    type_message(page, "back in a room")
    poll(lambda: "back in a room" in rooms.bob.texts(room=rooms.second), timeout=60,
         message="bob got the message of the room joined again")


def test_direct_message_between_two_agents_through_their_pages(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    alice_page = open_ui(open_page, rooms.alice)
    bob_page = open_ui(open_page, rooms.bob)
    # A user who does not exist is refused, in words.
    alice_page.fill("#dm-user", unique("nobody"))
    alice_page.click("#dm-form button[type=submit]")
    expect(alice_page.locator("#rooms-error")).to_be_visible(timeout=LONG)
    expect(alice_page.locator("#rooms-error-text")).not_to_be_empty()
    alice_page.click("#rooms-error-dismiss")
    expect(alice_page.locator("#rooms-error")).to_be_hidden()

    alice_page.fill("#dm-user", rooms.bob.name)
    alice_page.click("#dm-form button[type=submit]")
    expect(alice_page.locator("#room-title")).to_have_text(f"@{rooms.bob.name}", timeout=LONG)
    expect(alice_page.locator("#rooms-error")).to_be_hidden()
    type_message(alice_page, "just between us")
    bob_page.fill("#dm-user", rooms.alice.name)
    bob_page.click("#dm-form button[type=submit]")
    expect(bob_page.locator("#room-title")).to_have_text(f"@{rooms.alice.name}", timeout=LONG)
    expect(bob_page.locator("#messages .text")).to_have_text(["just between us"], timeout=LONG)
    type_message(bob_page, "agreed")
    expect(alice_page.locator("#messages .text")).to_have_text(
        ["just between us", "agreed"], timeout=LONG)
    direct = rooms.alice.state(alice_page.evaluate("() => decodeURIComponent("
                                                   "location.hash.slice(1))"))
    assert direct["kind"] == "direct"
    assert sorted(direct["members"]) == sorted([rooms.alice.name, rooms.bob.name])
    assert rooms.bob.texts(room=direct["room"]) == ["just between us", "agreed"]
    assert "just between us" not in rooms.bob.texts(room=rooms.first)
    expect(alice_page.locator("#room-list .room-entry[data-kind='direct'] .room-name")
           ).to_have_text(f"@{rooms.bob.name}")
    screenshot(alice_page, "agent-rooms-direct")


def test_switching_rooms_while_messages_arrive_keeps_each_in_its_room(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    page = open_ui(open_page, rooms.alice)
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true", timeout=LONG)
    prefix = {rooms.first: "A", rooms.second: "B"}
    sent: dict[str, list[str]] = {rooms.first: [], rooms.second: []}
    switched = threading.Event()
    failures: list[BaseException] = []

    def send_both() -> None:
        """Bob writes in both rooms, in turn, for as long as alice's page switches."""
        try:
            n = 0
            # At most 150 a room: the page holds the newest 200 (message-window.js).
            while (not switched.is_set() or n < 10) and n < 150:
                for room in (rooms.first, rooms.second):
                    text = f"{prefix[room]}{n:03d}"
                    rooms.bob.send(text, room=room)
                    sent[room].append(text)
                n += 1
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    sender = threading.Thread(target=send_both)
    sender.start()
    try:
        for flip in range(10):
            room = rooms.second if flip % 2 == 0 else rooms.first
            open_room(page, room)
            expect(page.locator("#room-title")).to_have_text(f"#{room}")
            # Whatever the page shows now is of the room shown, never of the one left.
            shown = browser_texts(page)
            assert all(t.startswith(prefix[room]) for t in shown), (room, shown)
    finally:
        switched.set()
        sender.join()
    assert not failures, failures
    assert len(sent[rooms.first]) >= 10
    for room in (rooms.second, rooms.first):
        open_room(page, room)
        expect(page.locator("#messages .text")).to_have_text(sent[room], timeout=LONG)
        assert rooms.alice.texts(room=room) == sent[room]
    assert badge(page, rooms.second).is_hidden()
    poll(lambda: unread(rooms.alice, rooms.first) == 0, timeout=30,
         message="the room shown is read")


def mark_read_posts(page: Page) -> list[str]:
    """The page's POSTs marking a room read, from now on (the list grows as they are made)."""
    marked: list[str] = []
    page.on("request", lambda request: marked.append(request.url)
            if request.method == "POST" and MARK_READ.search(request.url) else None)
    return marked


def test_messages_in_the_room_on_screen_are_seen_not_counted_and_not_marked_read_each(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    # Each message in the room on screen was counted unread, then marked read by the page: a
    # POST, a write of the read marker, two pushes of the room list and two redraws of it.
    page = open_page()
    marked = mark_read_posts(page)
    page.goto(rooms.alice.url + "/")
    expect(entry(page, rooms.first)).to_have_attribute("aria-current", "true", timeout=LONG)
    # Live events flow: the page's socket is open, and it said which room it reads.
    bob = page.locator(f"#members .member[data-device='{rooms.bob.device}']")
    expect(bob).to_have_attribute("data-state", "connected", timeout=LONG)
    sent = [f"live {n}" for n in range(5)]
    for text in sent:
        rooms.bob.send(text, room=rooms.first)
    expect(page.locator("#messages .text")).to_have_text(sent, timeout=LONG)
    expect(badge(page, rooms.first)).to_be_hidden()
    assert unread(rooms.alice, rooms.first) == 0
    assert marked == []
    # A message in a room not on screen still counts, and its badge says so.
    rooms.bob.send("elsewhere", room=rooms.second)
    expect(badge(page, rooms.second)).to_have_text("1", timeout=LONG)
    assert unread(rooms.alice, rooms.second) == 1
    assert marked == []



def test_a_hidden_page_reads_no_room_so_its_messages_count_until_it_is_seen_again(
    open_page: OpenPage, rooms: Rooms,
) -> None:
    page = open_page()
    marked = mark_read_posts(page)
    page.add_init_script(WATCH_READING)
    page.goto(rooms.alice.url + "/")
    bob = page.locator(f"#members .member[data-device='{rooms.bob.device}']")
    expect(bob).to_have_attribute("data-state", "connected", timeout=LONG)
    page.wait_for_function("(room) => window.__reading.at(-1) === room", arg=rooms.first)
    page.evaluate(SET_HIDDEN, True)
    page.wait_for_function("() => window.__reading.at(-1) === null")
    rooms.bob.send("while away", room=rooms.first)
    rooms.bob.send("still away", room=rooms.first)
    expect(badge(page, rooms.first)).to_have_text("2", timeout=LONG)
    assert unread(rooms.alice, rooms.first) == 2
    assert marked == []
    # Seen again: read once for both, and read as they come from then on.
    page.evaluate(SET_HIDDEN, False)
    expect(badge(page, rooms.first)).to_be_hidden()
    poll(lambda: unread(rooms.alice, rooms.first) == 0, timeout=30,
         message="the room seen again was marked read")
    rooms.bob.send("back", room=rooms.first)
    expect(page.locator("#messages .text")).to_have_text(
        ["while away", "still away", "back"], timeout=LONG)
    assert unread(rooms.alice, rooms.first) == 0
    assert len(marked) == 1, marked
