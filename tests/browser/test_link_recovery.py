"""Links that recover, between two browser peers in real Chromium: their UDP traffic is cut
with iptables inside the sealed namespace (the server's TCP carries on), so the link goes
`disconnected`; the offering page restarts ICE on the same connection (`restartIce()`), and
once traffic flows again the link is `connected` with no new connection."""

from __future__ import annotations

import shutil
import subprocess

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import OpenPage, join_room_page, unique
from tests.browser.stack import Server
from tests.helpers import require

LONG = 60_000  # ms: generous, the 2-core machine is shared
DROP_UDP = ["INPUT", "-p", "udp", "-j", "DROP"]


def cut(on: bool) -> None:
    """Drop (or let through again) every UDP packet in the sealed namespace."""
    subprocess.run(["iptables", "-I" if on else "-D", *DROP_UDP], check=True, timeout=30)


def member(page: Page, user: str) -> Locator:
    return page.locator("#members .member", has=page.locator(".member-name", has_text=user))


def test_two_browsers_restart_ice_on_a_cut_link_and_keep_their_connection(
    open_page: OpenPage, server: Server,
) -> None:
    require(None if shutil.which("iptables") else "iptables is not installed",
            "cutting traffic needs iptables (apt-get install iptables)")
    room = unique("room")
    dave, erin = unique("dave"), unique("erin")
    server.register(dave)
    server.register(erin)
    first, second = open_page(), open_page()
    devices = {dave: join_room_page(first, server, dave, room),
               erin: join_room_page(second, server, erin, room)}
    pages = {dave: first, erin: second}
    offerer = min(devices, key=lambda user: devices[user])
    other = erin if offerer == dave else dave
    for user, page in pages.items():
        peer = other if user == offerer else offerer
        expect(member(page, peer)).to_have_attribute("data-state", "connected", timeout=LONG)

    cut(True)
    try:
        for user, page in pages.items():
            peer = other if user == offerer else offerer
            expect(member(page, peer)).to_have_attribute("data-state", "disconnected",
                                                         timeout=20_000)
        expect(member(pages[offerer], other)).to_have_attribute("data-ice-restarts", "1",
                                                                 timeout=10_000)
    finally:
        cut(False)
    for user, page in pages.items():
        peer = other if user == offerer else offerer
        expect(member(page, peer)).to_have_attribute("data-state", "connected", timeout=30_000)
    # The answering side answered the restart on its connection: no fresh connection, and
    # a message still crosses.
    expect(member(pages[other], offerer)).to_have_attribute("data-ice-restarts", "1")
    page = pages[offerer]
    page.fill("#composer-text", "after the cut")
    page.press("#composer-text", "Enter")
    expect(pages[other].locator("#messages .text").last).to_have_text("after the cut",
                                                                      timeout=LONG)
    # Text content: an event out of view is not laid out, its innerText is empty.
    timeline = pages[offerer].locator("#timeline li[data-kind=link]").all_text_contents()
    assert not any("failed" in text for text in timeline), timeline
