"""The author's timestamp in the chat UI: any valid `ts` (0 … 2^53−1) renders, as the history
page renders it (protocol/timestamps.py and its twin static/chat/timestamps.js)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from protocol import Envelope
from protocol.limits import MAX_TS
from protocol.timestamps import DISPLAY_MAX_MS, DISPLAY_OVERFLOW, displayable, iso_utc
from tests.browser.conftest import OpenPage, browser_texts, join_room_page, unique
from tests.browser.stack import Server, member_socket
from tests.helpers import poll

SAMPLES = [0, 1, 1_700_000_000_000, DISPLAY_MAX_MS, DISPLAY_MAX_MS + 1, 8_640_000_000_000_000,
           MAX_TS, -1, 1.5]


@pytest.fixture
def page(open_page: OpenPage, server: Server) -> Iterator[Page]:
    page = open_page()
    page.goto(server.url + "/")
    yield page


def test_the_display_rule_is_the_same_in_javascript(page: Page) -> None:
    got = page.evaluate("""async (samples) => {
      const t = await import('/static/chat/timestamps.js');
      return { max: t.DISPLAY_MAX_MS, overflow: t.DISPLAY_OVERFLOW,
               shown: samples.map((ms) => t.displayable(ms)),
               iso: samples.map((ms) => t.isoTime(ms)) };
    }""", SAMPLES)
    assert got["max"] == DISPLAY_MAX_MS and got["overflow"] == DISPLAY_OVERFLOW
    assert got["shown"] == [displayable(ms) for ms in SAMPLES]
    # The same instant, to the second, where Python shows one.
    for ms, iso in zip(SAMPLES, got["iso"], strict=True):
        python = iso_utc(ms)
        assert (iso is None) == (python is None), ms
        if python is not None:
            assert iso[:19] == python[:19], (ms, iso, python)


def publish(server: Server, room: str, stamps: dict[str, int]) -> None:
    """Sign up a member who stores one message per (text, ts) in the room's log."""
    with member_socket(server, room) as (client, key, name):
        for seq, (text, ts) in enumerate(stamps.items(), start=1):
            envelope = Envelope.create(key, room=room, author=name, seq=seq, lamport=seq,
                                       ts=ts, text=text)
            reply = client.call("publish", {"envelope": envelope.to_dict()}, timeout=30)
            assert reply["ok"], reply


def test_a_message_stamped_past_any_date_renders_in_the_chat(open_page: OpenPage,
                                                             server: Server) -> None:
    """`new Date(2**53 - 1).toISOString()` throws: the chat UI used to fail on this valid
    message (open_page fails the test on any uncaught error in the page)."""
    room = unique("room")
    stamps = {"from the far future": MAX_TS, "from the end of 9999": DISPLAY_MAX_MS,
              "from today": 1_700_000_000_000}
    publish(server, room, stamps)
    reader = unique("frank")
    server.register(reader)
    page = open_page()
    join_room_page(page, server, reader, room)
    poll(lambda: sorted(browser_texts(page)) == sorted(stamps), timeout=60,
         message="the page shows the three messages")
    times = page.evaluate("""() => [...document.querySelectorAll('#messages .message')].map(
      (li) => ({ text: li.querySelector('.text').textContent,
                 shown: li.querySelector('time').textContent,
                 iso: li.querySelector('time').getAttribute('datetime') }))""")
    by_text = {t["text"]: t for t in times}
    assert by_text["from the far future"]["shown"] == DISPLAY_OVERFLOW
    assert by_text["from the far future"]["iso"] is None
    assert by_text["from the end of 9999"]["iso"] == "9999-12-31T23:59:59.999Z"
    assert by_text["from today"]["iso"] == "2023-11-14T22:13:20.000Z"
