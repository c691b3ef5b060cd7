"""The rooms a page keeps besides the one it shows, in real Chromium: they wait for the shown
room's links before they load, unless the reader asks for one (it loads at once), and a room
whose log failed to load is loaded again when it is next asked for, instead of refusing every
call for the page's life."""

from __future__ import annotations

import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, browser_texts, join_room_page, send_from_page, unique
from tests.browser.stack import Server, member_socket
from tests.browser.test_agent_rooms import entry, open_room
from tests.browser.test_browser_rooms import WATCH_FRAMES, WATCH_LOADS
from tests.helpers import poll

LONG = 60_000
OTHERS_WAIT_MAX_MS = 3000  # static/chat/browser-device.js: the other rooms' longest wait


def loads(page: Page) -> dict[str, float]:
    """When each room's log was first read (the page's clock, ms)."""
    first: dict[str, float] = {}
    for way, room, at in page.evaluate("() => window.__frames"):
        if way == "load":
            first.setdefault(room, at)
    return first


def page_keeping(open_page: OpenPage, server: Server, room: str, text: str,
                 *scripts: str, user: str | None = None) -> tuple[Page, str]:
    """A page of a new user (or `user`, registered already) that joined `room` and wrote
    `text` there; `scripts` run in every document it loads from the start."""
    if user is None:
        user = unique("bob")
        server.register(user)
    page = open_page()
    for script in scripts:
        page.add_init_script(script)
    join_room_page(page, server, user, room)
    send_from_page(page, text)
    return page, user


def test_a_kept_room_the_reader_opens_loads_at_once_not_after_the_shown_rooms_links(
    open_page: OpenPage, server: Server,
) -> None:
    shown, kept = unique("shown"), unique("kept")
    page, _ = page_keeping(open_page, server, kept, "kept before", WATCH_FRAMES, WATCH_LOADS)
    # A member whose device is in the room's roster but never answers an offer: the page
    # showing the room waits for its link until the wait gives up.
    with member_socket(server, shown):
        page.goto(f"{server.url}/rooms/{shown}")
        page.wait_for_selector("#chat[data-ready=yes]", timeout=LONG)
        # The shown room waits for its link to the silent member: the kept room would load
        # only once that wait gives up. The reader asks for it now.
        open_room(page, kept)
        clicked = page.evaluate("() => performance.now()")
        expect(page.locator("#messages > .message").last).to_contain_text("kept before",
                                                                         timeout=LONG)
        first = loads(page)
        assert shown in first and kept in first, first
        assert first[kept] - first[shown] < OTHERS_WAIT_MAX_MS, (
            "the kept room waited for the shown room's links", first, clicked)


# The first read of one room's log fails, as an IndexedDB error would make it.
FAIL_FIRST_LOAD = """
(() => {
  const native = IDBIndex.prototype.openKeyCursor;
  let failed = false;
  IDBIndex.prototype.openKeyCursor = function (query, ...rest) {
    if (!failed && this.name === 'order' && String(query.lower[0]).startsWith('broken-')) {
      failed = true;
      window.__injected = true;
      throw new DOMException('injected: the log could not be read', 'UnknownError');
    }
    return native.call(this, query, ...rest);
  };
})();
"""


def test_a_kept_room_whose_log_failed_to_load_loads_again_when_asked_for(
    open_page: OpenPage, server: Server,
) -> None:
    shown, broken = unique("shown"), unique("broken")
    page, _ = page_keeping(open_page, server, broken, "in the broken room")
    page.add_init_script(FAIL_FIRST_LOAD)
    page.goto(f"{server.url}/rooms/{shown}")
    page.wait_for_selector("#chat[data-ready=yes]", timeout=LONG)
    poll(lambda: page.evaluate("() => window.__injected === true"), timeout=30,
         message="the injected failure of the kept room's first load")
    expect(entry(page, broken)).to_be_visible()
    open_room(page, broken)
    poll(lambda: "in the broken room" in browser_texts(page), timeout=LONG / 1000,
         message="the room's log loaded on the second try")
    send_from_page(page, "and it works")
    poll(lambda: browser_texts(page)[-1:] == ["and it works"], timeout=LONG / 1000,
         message="a message sent in the room once it loaded")


def test_a_kept_private_room_the_reader_was_removed_from_meanwhile_leaves_the_list(
    open_page: OpenPage, server: Server,
) -> None:
    """Removed from a private room while the page was not in it (closed, or still waiting to
    join it behind the shown room): its join is refused, and the page drops the room instead
    of listing a room it cannot enter."""
    shown, hideout = unique("shown"), unique("hideout")
    owner, bob = unique("olga"), unique("bob")
    owner_token = server.register(owner)
    server.register(bob)
    auth = {"Authorization": f"Bearer {owner_token}"}
    made = requests.post(f"{server.url}/api/rooms", json={"name": hideout, "private": True},
                         headers=auth, timeout=30)
    assert made.status_code == 201, made.text
    added = requests.post(f"{server.url}/api/rooms/{hideout}/members",
                          json={"username": bob}, headers=auth, timeout=30)
    assert added.status_code == 201, added.text
    page, _ = page_keeping(open_page, server, hideout, "in the hideout", user=bob)
    page.goto(f"{server.url}/")
    gone = requests.delete(f"{server.url}/api/rooms/{hideout}/members/{bob}", headers=auth,
                           timeout=30)
    assert gone.status_code == 200, gone.text
    with member_socket(server, shown):
        page.goto(f"{server.url}/rooms/{shown}")
        page.wait_for_selector("#chat[data-ready=yes]", timeout=LONG)
        expect(entry(page, hideout)).to_have_count(0, timeout=LONG)
        expect(entry(page, shown)).to_have_attribute("aria-current", "true")
