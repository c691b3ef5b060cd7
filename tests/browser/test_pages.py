"""The server's own pages in real Chromium: sign-in and registration, the start page and the
history browser (paging, search), with markup in messages and names shown as text only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, screenshot, sign_in, unique
from tests.browser.stack import PASSWORD, Server
from tests.signaling.conftest import Account, connect_peer, register_account, signed_envelope

# Markup a person might post; each sets a flag if a browser ever ran it.
ATTACKS = [
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "<script>window.__xss = 'script'</script>",
    "<svg onload=\"window.__xss = 'svg'\"></svg>",
]


def publish(account: Account, room: str, texts: list[str]) -> None:
    """Store messages in the room's log as an agent would: signed, uploaded with `publish`."""
    peer = connect_peer(account)
    try:
        assert peer.join(room)["ok"]
        envelopes = [signed_envelope(account, room, seq, text=text)
                     for seq, text in enumerate(texts, start=1)]
        for start in range(0, len(envelopes), 100):
            reply = peer.call("publish", {"envelopes": envelopes[start:start + 100]}, timeout=30)
            assert reply["ok"] and all(r["ok"] for r in reply["results"]), reply
    finally:
        peer.client.disconnect()


@pytest.fixture
def author(server: Server) -> Account:
    return register_account(server.url, "author")


@pytest.fixture
def reader(open_page: OpenPage, server: Server, author: Account) -> Iterator[Page]:
    """A page signed in as the author."""
    page = open_page()
    sign_in(page, server, author.username)
    yield page


def history_texts(page: Page) -> list[str]:
    texts: list[str] = page.locator("ol.messages .message .text").all_inner_texts()
    return texts


def test_wrong_password_is_refused_with_a_message(open_page: OpenPage, server: Server) -> None:
    name = unique("kim")
    server.register(name)
    page = open_page()
    page.goto(server.url + "/")
    screenshot(page, "sign-in")
    page.fill("#login-username", name)
    page.fill("#login-password", "not the password")
    page.click("#login-form button[type=submit]")
    expect(page.locator(".flash.error")).to_have_text("wrong user name or password")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("form.signout")).to_have_count(0)
    screenshot(page, "sign-in-wrong-password")
    page.fill("#login-username", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator(".signout .whoami")).to_have_text(name)


def test_start_page_lists_the_rooms_with_chat_and_history_links(
    reader: Page, server: Server, author: Account,
) -> None:
    room = unique("room")
    publish(author, room, ["a first message"])
    reader.goto(server.url + "/")
    row = reader.locator(".rooms li", has_text=f"#{room}")
    expect(row.locator("a.button")).to_have_attribute("href", f"/rooms/{room}")
    expect(row.locator("a", has_text=f"#{room}")).to_have_attribute(
        "href", f"/rooms/{room}/history")
    screenshot(reader, "rooms")
    reader.fill("#room", room.upper())
    reader.click("#go-form button[value=history]")
    reader.wait_for_url(f"{server.url}/rooms/{room}/history")
    expect(reader.locator("ol.messages .text")).to_have_text(["a first message"])


def test_history_pages_back_and_forth_in_display_order(
    reader: Page, server: Server, author: Account,
) -> None:
    room = unique("room")
    texts = [f"line {n:03d}" for n in range(120)]
    publish(author, room, texts)
    reader.goto(f"{server.url}/rooms/{room}/history")
    assert history_texts(reader) == texts[70:]
    expect(reader.locator("a[rel=next]")).to_have_count(0)
    screenshot(reader, "history")
    reader.locator("a[rel=prev]").first.click()
    expect(reader.locator("ol.messages .text").first).to_have_text("line 020")
    assert history_texts(reader) == texts[20:70]
    reader.locator("a[rel=prev]").first.click()
    expect(reader.locator("ol.messages .text").first).to_have_text("line 000")
    assert history_texts(reader) == texts[:20]
    expect(reader.locator("a[rel=prev]")).to_have_count(0)
    reader.locator("a[rel=next]").first.click()
    expect(reader.locator("ol.messages .text").first).to_have_text("line 020")
    assert history_texts(reader) == texts[20:70]


def test_history_search_shows_only_matching_messages(
    reader: Page, server: Server, author: Account,
) -> None:
    room = unique("room")
    publish(author, room, ["apples are red", "bananas are yellow", "green apples are sour"])
    reader.goto(f"{server.url}/rooms/{room}/history")
    reader.fill("#q", "apples")
    reader.press("#q", "Enter")
    expect(reader.locator("ol.messages .text")).to_have_text(
        ["apples are red", "green apples are sour"])
    screenshot(reader, "history-search")
    reader.fill("#q", "zebra")
    reader.press("#q", "Enter")
    expect(reader.locator("main")).to_contain_text("No message matches “zebra”.")
    reader.click("text=Clear")
    expect(reader.locator("ol.messages .text")).to_have_count(3)


def test_markup_in_history_is_shown_as_text_and_never_runs(
    reader: Page, server: Server, author: Account,
) -> None:
    room = unique("room")
    publish(author, room, ATTACKS)
    reader.goto(f"{server.url}/rooms/{room}/history")
    assert history_texts(reader) == ATTACKS
    assert reader.locator("main img, main script, main svg").count() == 0
    assert reader.evaluate("() => window.__xss") is None
    reader.fill("#q", ATTACKS[1])
    reader.press("#q", "Enter")
    expect(reader.locator("ol.messages .text")).to_have_text([ATTACKS[1]])
    expect(reader.locator("#q")).to_have_value(ATTACKS[1])
    assert reader.evaluate("() => window.__xss") is None
    screenshot(reader, "history-markup")


# Short enough for the name length limit, so the refusal is about the markup itself.
@pytest.mark.parametrize("name", ["<img src=x onerror=__xss=1>", "bob<script>__xss=1</script>"])
def test_markup_in_a_user_name_is_refused_and_shown_as_text(
    open_page: OpenPage, server: Server, name: str,
) -> None:
    page = open_page()
    page.goto(server.url + "/")
    page.fill("#register-username", name)
    page.fill("#register-password", PASSWORD)
    page.click("#register-form button[type=submit]")
    error = page.locator(".flash.error")
    expect(error).to_contain_text("'<'")
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("() => window.__xss") is None
    expect(page.locator("form.signout")).to_have_count(0)
