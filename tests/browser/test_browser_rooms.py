"""The browser page's room list in real Chromium, used as a person would: one page in every
room of its user, over one Socket.IO connection and one RTCPeerConnection per other device;
unread counts rising and clearing, rooms joined, created private, left and remembered across
a reload, a direct message with an agent, switching rooms while messages arrive, at desktop and
phone sizes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PHONE,
    OpenPage,
    browser_texts,
    join_room_page,
    screenshot,
    send_from_page,
    unique,
)
from tests.browser.stack import Agent, Server, start_agent
from tests.browser.test_agent_rooms import badge, entry, open_room, screenshot_phone_panel
from tests.helpers import poll

LONG = 60_000  # ms: generous, the 2-core machine is shared

# The page's Socket.IO connections, counted by the page itself (every WebSocket it opens).
COUNT_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = 0;
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets += 1; }
  };
})();
"""


# Every Socket.IO frame the page sends and receives, in order (each WebSocket it opens).
WATCH_FRAMES = """
(() => {
  window.__frames = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        if (typeof e.data === 'string') window.__frames.push(['in', e.data, performance.now()]);
      });
    }
    send(data) {
      if (typeof data === 'string') window.__frames.push(['out', data, performance.now()]);
      return super.send(data);
    }
  };
})();
"""
# Each room's log read from IndexedDB (BrowserLog.load), in the same list as the frames.
WATCH_LOADS = """
(() => {
  const native = IDBIndex.prototype.openKeyCursor;
  IDBIndex.prototype.openKeyCursor = function (query, ...rest) {
    if (this.name === 'order') {
      window.__frames.push(['load', String(query.lower[0]), performance.now()]);
    }
    return native.call(this, query, ...rest);
  };
})();
"""
# The page's writes of the rooms it remembers (localStorage `gibberish:<user>:rooms`), counted.
COUNT_ROOMS_WRITES = """
(() => {
  window.__roomsWrites = 0;
  const native = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) {
    if (String(key).endsWith(':rooms')) window.__roomsWrites += 1;
    return native.call(this, key, value);
  };
})();
"""
JOIN_SENT = re.compile(r'^42(\d+)\["join",(.*)\]$', re.S)
ACK = re.compile(r"^43(\d+)")


def joins_and_answers(page: Page) -> list[tuple[str, str]]:
    """The page's joins and the server's answers to them, in the order they crossed the socket:
    ("join", room) and ("answer", room)."""
    frames: list[list[str]] = page.evaluate("() => window.__frames")
    rooms: dict[str, str] = {}
    seen: list[tuple[str, str]] = []
    for way, data, _at in frames:
        sent = JOIN_SENT.match(data) if way == "out" else None
        if sent:
            rooms[sent.group(1)] = json.loads(sent.group(2))["room"]
            seen.append(("join", rooms[sent.group(1)]))
        acked = ACK.match(data) if way == "in" else None
        if acked and acked.group(1) in rooms:
            seen.append(("answer", rooms[acked.group(1)]))
    return seen


def join_from_list(page: Page, room: str, private: bool = False) -> None:
    page.fill("#join-name", room)
    if private:
        page.check("#join-private")
    page.click("#join-form button[type=submit]")


def page_links(page: Page) -> list[dict[str, str]]:
    """The page's own list of its device's links: device, state and the rooms it carries."""
    result: list[dict[str, str]] = page.evaluate(
        "() => [...document.querySelectorAll('#device-links .device-link')].map((li) => ({"
        "device: li.dataset.device, state: li.dataset.state,"
        "rooms: li.querySelector('.device-link-rooms').textContent}))")
    return result


def agent_link(agent: Agent, device: str) -> list[dict[str, object]]:
    return [link for link in agent.device_links() if link["device"] == device]


def join_and_come_back(page: Page, agent: Agent, device: str, shown: str, other: str) -> None:
    """The page, showing `shown`, joins `other` from its list (which shows it), opens `shown`
    again, and is linked with `agent` in both."""
    join_from_list(page, other)
    expect(entry(page, other)).to_have_attribute("aria-current", "true", timeout=LONG)
    open_room(page, shown)
    expect(entry(page, shown)).to_have_attribute("aria-current", "true", timeout=LONG)
    poll(lambda: [sorted(map(str, link["rooms"])) for link in agent_link(agent, device)]
         == [sorted([shown, other])], timeout=60, message="the page linked in both rooms")


def test_a_page_in_two_rooms_shares_one_connection_and_keeps_each_rooms_messages_apart(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    first, second, third = unique("first"), unique("second"), unique("third")
    alice = start_agent(server, unique("alice"), first, tmp_path / "alice")
    try:
        alice.join(second)
        alice.join(third)  # the page is not in this one
        bob = unique("bob")
        server.register(bob)
        page = open_page()
        page.add_init_script(COUNT_SOCKETS)
        device = join_room_page(page, server, bob, first)
        poll(lambda: len(agent_link(alice, device)) == 1, timeout=60,
             message="alice's agent linked to the page")
        join_from_list(page, second)
        expect(entry(page, second)).to_have_attribute("aria-current", "true", timeout=LONG)
        expect(page.locator("#room-title")).to_have_text(f"#{second}")
        assert page.evaluate("() => location.pathname") == f"/rooms/{second}"
        # One peer connection between the two devices, carrying both rooms they share.
        # The rooms and the state in one look: on a busy machine the link may still be
        # connecting when the second room is added to it.
        poll(lambda: [(sorted(map(str, link["rooms"])), link["state"])
                      for link in agent_link(alice, device)]
             == [(sorted([first, second]), "connected")], timeout=60,
             message="one connected link from alice to the page, carrying the two shared rooms")
        expect(page.locator("#device-links .device-link")).to_have_count(1, timeout=LONG)
        poll(lambda: page_links(page) == [{"device": alice.device, "state": "connected",
                                           "rooms": f"#{first}, #{second}"}],
             timeout=30, message="the page lists one link to alice carrying both rooms")
        # One Socket.IO connection for the page, whatever the number of rooms.
        assert page.evaluate("() => window.__sockets") == 1

        # Messages of each room reach only that room, in the same order on both sides.
        alice.send("in the first room", room=first)
        alice.send("in the second room", room=second)
        alice.send("in the third room", room=third)
        expect(page.locator("#messages .text")).to_have_text(["in the second room"],
                                                             timeout=LONG)
        send_from_page(page, "bob in the second room")
        open_room(page, first)
        expect(page.locator("#messages .text")).to_have_text(["in the first room"],
                                                             timeout=LONG)
        send_from_page(page, "bob in the first room")
        poll(lambda: alice.texts(first) == ["in the first room", "bob in the first room"]
             and alice.texts(second) == ["in the second room", "bob in the second room"],
             timeout=60, message="each of bob's messages reached its own room only")
        poll(lambda: browser_texts(page) == alice.texts(first), timeout=30,
             message="the same order on both sides")
        assert "in the third room" not in browser_texts(page)
        screenshot(page, "browser-rooms-two-rooms")
    finally:
        alice.stop()


def test_unread_counts_rise_and_clear_and_rooms_switch_without_a_reload(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    first, second = unique("first"), unique("second")
    alice = start_agent(server, unique("alice"), first, tmp_path / "alice")
    try:
        alice.join(second)
        carol = unique("carol")
        server.register(carol)
        page = open_page()
        device = join_room_page(page, server, carol, first)
        join_and_come_back(page, alice, device, first, second)
        page.evaluate("() => { window.__sameDocument = true; }")
        for n in range(3):
            alice.send(f"unread {n}", room=second)
        expect(badge(page, second)).to_have_text("3", timeout=LONG)
        expect(badge(page, first)).to_be_hidden()
        expect(page.locator("#messages .message")).to_have_count(0)
        page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        expect(page.locator("#rooms-toggle-unread")).to_have_text("3")
        screenshot(page, "browser-rooms-unread")
        screenshot_phone_panel(page, "browser-rooms-panel")
        page.set_viewport_size({"width": 1280, "height": 800})

        # Switching while messages keep coming: every one lands in its own room, once.
        open_room(page, second)
        for n in range(3, 6):
            alice.send(f"unread {n}", room=second)
            alice.send(f"first {n}", room=first)
        expect(page.locator("#messages .text")).to_have_text(
            [f"unread {n}" for n in range(6)], timeout=LONG)
        expect(badge(page, second)).to_be_hidden()
        expect(badge(page, first)).to_have_text("3", timeout=LONG)
        open_room(page, first)
        expect(page.locator("#messages .text")).to_have_text(
            [f"first {n}" for n in range(3, 6)], timeout=LONG)
        expect(badge(page, first)).to_be_hidden()
        assert page.evaluate("() => window.__sameDocument") is True

        # The rooms and their counts are remembered in this browser: a reload rejoins both.
        alice.send("while away", room=second)
        expect(badge(page, second)).to_have_text("1", timeout=LONG)
        page.reload()
        page.wait_for_selector("#chat[data-ready='yes']", timeout=LONG)
        expect(entry(page, second)).to_be_visible(timeout=LONG)
        expect(badge(page, second)).to_have_text("1", timeout=LONG)
        expect(entry(page, first)).to_have_attribute("aria-current", "true")

        # Leaving: the room goes from the list and from the link, which stays for the other.
        open_room(page, second)
        page.click("#leave-room")
        expect(entry(page, second)).to_have_count(0, timeout=LONG)
        expect(entry(page, first)).to_have_attribute("aria-current", "true", timeout=LONG)
        poll(lambda: [list(map(str, link["rooms"])) for link in agent_link(alice, device)]
             == [[first]], timeout=60, message="the link to alice carries the first room only")
        page.reload()
        page.wait_for_selector("#chat[data-ready='yes']", timeout=LONG)
        expect(entry(page, first)).to_be_visible(timeout=LONG)
        expect(entry(page, second)).to_have_count(0)
    finally:
        alice.stop()


def test_private_rooms_and_a_direct_message_from_the_browsers_room_list(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    lobby = unique("lobby")
    alice = start_agent(server, unique("alice"), lobby, tmp_path / "alice")
    try:
        dave = unique("dave")
        server.register(dave)
        page = open_page()
        device = join_room_page(page, server, dave, lobby)
        # A private room of dave's own: its kind is shown.
        hideout = unique("hideout")
        join_from_list(page, hideout, private=True)
        expect(entry(page, hideout)).to_have_attribute("aria-current", "true", timeout=LONG)
        expect(entry(page, hideout)).to_have_attribute("data-kind", "private", timeout=LONG)
        expect(page.locator("#room-kind")).to_have_text("private")
        # Someone else's private room: refused in the server's words, and not kept.
        alices = unique("alices")
        alice.join(alices, private=True)
        join_from_list(page, alices)
        expect(page.locator("#rooms-error")).to_be_visible(timeout=LONG)
        expect(page.locator("#rooms-error-text")).to_contain_text("member")
        expect(entry(page, alices)).to_have_count(0)
        page.click("#rooms-error-dismiss")

        # A direct message with alice's agent, started from the page.
        page.fill("#dm-user", alice.name)
        page.click("#dm-form button[type=submit]")
        expect(page.locator("#room-title")).to_have_text(f"@{alice.name}", timeout=LONG)
        dm = page.evaluate("() => decodeURIComponent(location.pathname.split('/').pop())")
        assert dm.startswith("dm-")
        expect(page.locator("#room-kind")).to_have_text("direct")
        alice.join(dm)
        send_from_page(page, "hello alice, just us")
        alice.send("hello dave", room=dm)
        poll(lambda: alice.texts(dm) == browser_texts(page) and len(browser_texts(page)) == 2,
             timeout=60, message="the DM on both sides, in one order")
        assert "hello alice, just us" not in alice.texts(lobby)
        # Still one connection between the two devices, now carrying the lobby and the DM.
        poll(lambda: [sorted(map(str, link["rooms"])) for link in agent_link(alice, device)]
             == [sorted([lobby, dm])], timeout=60, message="one connection, two rooms")
        screenshot(page, "browser-rooms-direct")
    finally:
        alice.stop()


def test_the_room_a_page_opens_is_joined_before_the_others_it_keeps(
    open_page: OpenPage, server: Server,
) -> None:
    """A page that keeps several rooms asks the server to join the room it shows first, and
    the others only once the server has answered that one: sent at once, the shown room's
    join waited behind the others' at the server, and with it the page's links."""
    kept, also, shown = unique("kept"), unique("also"), unique("shown")
    bob = unique("bob")
    server.register(bob)
    page = open_page()
    page.add_init_script(WATCH_FRAMES)
    join_room_page(page, server, bob, kept)
    join_from_list(page, also)
    expect(entry(page, also)).to_have_attribute("aria-current", "true", timeout=LONG)
    page.goto(f"{server.url}/rooms/{shown}")
    page.wait_for_selector("#chat[data-ready=yes]", timeout=LONG)
    poll(lambda: sum(kind == "answer" for kind, _ in joins_and_answers(page)) == 3,
         timeout=60, message="the page's three joins answered")
    seen = joins_and_answers(page)
    assert seen[:2] == [("join", shown), ("answer", shown)], seen
    assert sorted(room for kind, room in seen[2:] if kind == "join") == sorted([kept, also])


def test_the_other_rooms_a_page_keeps_load_and_join_once_the_shown_rooms_link_is_up(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    """With a peer present in the room a page opens, the page's other rooms load their logs
    and join once its link to that peer is up: their joins (and the catch-up each starts) had
    the server busy while it relayed the shown room's offer and answer, and a long room's log
    held the page's thread while the link and the first messages waited."""
    shown, kept = unique("shown"), unique("kept")
    alice = start_agent(server, unique("alice"), shown, tmp_path / "alice")
    try:
        bob = unique("bob")
        server.register(bob)
        page = open_page()
        page.add_init_script(WATCH_FRAMES)
        page.add_init_script(WATCH_LOADS)
        page.add_init_script("globalThis.gibberishTiming = true")  # the link's steps, marked
        join_room_page(page, server, bob, kept)
        page.goto(f"{server.url}/rooms/{shown}")
        page.wait_for_selector("#chat[data-ready=yes]", timeout=LONG)
        poll(lambda: sum(kind == "answer" for kind, _ in joins_and_answers(page)) == 2,
             timeout=60, message="the page's two joins answered")
        seen = joins_and_answers(page)
        assert [room for kind, room in seen if kind == "join"] == [shown, kept], seen
        # The page's own mark of its channel to alice opening (static/chat/timing.js), and the
        # other room's join on the same clock.
        opened = page.evaluate(
            "() => performance.getEntriesByType('mark').find((m) => m.name.startsWith("
            "'gibberish: link ') && m.name.endsWith(' channel open'))?.startTime")
        joined = [at for way, data, at in page.evaluate("() => window.__frames")
                  if way == "out" and (sent := JOIN_SENT.match(data))
                  and json.loads(sent.group(2))["room"] == kept]
        assert opened is not None and joined and joined[0] >= opened, (opened, joined)
        loads: dict[str, float] = {}
        for way, room, at in page.evaluate("() => window.__frames"):
            if way == "load":
                loads.setdefault(room, at)
        assert loads[shown] < opened <= loads[kept], (loads, opened)
        # And the room loaded late works: a message there reaches the page, counted unread.
        alice.join(kept)
        alice.send("in the other room", room=kept)
        expect(badge(page, kept)).to_have_text("1", timeout=LONG)
    finally:
        alice.stop()


# The frame router of a page with one room, `r`, whose log is still loading (no mesh yet): a
# frame for it arrives, and 4 s later (past the 3 s a loaded room holds a frame from a sender
# it does not list) the room is loaded, lists the sender and admits it. The frames it was
# handed, and the router's refusals.
LOADING_ROOM_FRAME = """async () => {
  const { FrameRouter } = await import('/static/chat/browser-frame-router.js');
  const delivered = [];
  const room = { mesh: null, onFrame: (_peer, frame) => delivered.push(frame.n) };
  const router = new FrameRouter({ joined: new Map([['r', room]]), roomsOf: () => [],
                                   log: console });
  const peer = { device: 'd1', user: 'ann', public_key: '' };
  router.onFrame(peer, JSON.stringify({ room: 'r', t: 'vv', n: 1 }));
  await new Promise((resolve) => setTimeout(resolve, 4000));
  room.mesh = { peers: new Set(['d1']) };
  router.admitted('r', 'd1');
  return { delivered, refused: router.refused };
}"""


def test_a_frame_for_a_room_whose_log_is_still_loading_waits_for_it(
    open_page: OpenPage, server: Server,
) -> None:
    """The rooms a page keeps besides the shown one load after it has linked (up to 3 s), then
    join: a peer's frame for one of them is held until the room lists the peer, not refused
    after the 3 s a loaded room gives a sender it does not list yet."""
    page = open_page()
    page.goto(f"{server.url}/")
    result = page.evaluate(LOADING_ROOM_FRAME)
    assert result == {"delivered": [1], "refused": {}}, result


def test_messages_in_the_room_on_screen_are_read_as_they_come_not_counted_unread(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    # A message shown in the room being read used to count as unread, which saved the room
    # list, redrew it, and was marked read again (saved and redrawn once more): every message.
    room, other = unique("shown"), unique("other")
    alice = start_agent(server, unique("alice"), room, tmp_path / "alice")
    try:
        alice.join(other)
        carol = unique("carol")
        server.register(carol)
        page = open_page()
        page.add_init_script(COUNT_ROOMS_WRITES)
        device = join_room_page(page, server, carol, room)
        poll(lambda: [list(map(str, link["rooms"])) for link in agent_link(alice, device)]
             == [[room]], timeout=60, message="the page linked with alice")
        alice.send("hello", room=room)
        expect(page.locator("#messages .text")).to_have_text(["hello"], timeout=LONG)
        before = page.evaluate("() => window.__roomsWrites")
        for n in range(5):
            alice.send(f"live {n}", room=room)
        expect(page.locator("#messages .text")).to_have_text(
            ["hello", *[f"live {n}" for n in range(5)]], timeout=LONG)
        expect(badge(page, room)).to_be_hidden()
        assert page.evaluate("() => window.__roomsWrites") == before
        assert page.evaluate(f"() => JSON.parse(localStorage.getItem('gibberish:{carol}:rooms'))"
                             f".unread[{json.dumps(room)}]") == 0
        # A room not on screen still counts.
        join_and_come_back(page, alice, device, room, other)
        alice.send("elsewhere", room=other)
        expect(badge(page, other)).to_have_text("1", timeout=LONG)
    finally:
        alice.stop()
