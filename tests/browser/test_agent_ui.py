"""The peer agent's own chat UI (http://127.0.0.1:N/) in real Chromium, used as a person
would: sending, receiving live, scrolling back, the member list, the server banner and the
delivery marks."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, browser_texts, screenshot, state_of, unique
from tests.browser.stack import Agent, Server, start_agent, wait_agents_linked
from tests.helpers import poll

LONG = 60_000  # ms: generous, the 2-core machine is shared


@dataclass
class Pair:
    room: str
    alice: Agent
    bob: Agent


def start_pair(server: Server, workdir: Path) -> Pair:
    room = unique("room")
    alice = start_agent(server, unique("alice"), room, workdir / "alice")
    try:
        bob = start_agent(server, unique("bob"), room, workdir / "bob")
    except BaseException:
        alice.stop()
        raise
    pair = Pair(room, alice, bob)
    try:
        wait_agents_linked([alice, bob], {alice.name, bob.name})
    except BaseException:
        alice.stop()
        bob.stop()
        raise
    return pair


@pytest.fixture
def pair(server: Server, tmp_path: Path) -> Iterator[Pair]:
    """Two agents of a fresh room on the shared server, linked to each other."""
    running = start_pair(server, tmp_path)
    yield running
    running.alice.stop()
    running.bob.stop()


def open_ui(open_page: OpenPage, agent: Agent) -> Page:
    page = open_page()
    page.goto(agent.url + "/")
    expect(page.locator("#room-title")).not_to_be_empty(timeout=LONG)
    return page


def type_message(page: Page, text: str) -> None:
    page.fill("#composer-text", text)
    page.click("#composer button[type=submit]")
    expect(page.locator("#composer-text")).to_have_value("", timeout=LONG)


def test_message_typed_in_one_agents_ui_appears_live_in_the_others(
    open_page: OpenPage, pair: Pair,
) -> None:
    alice_page = open_ui(open_page, pair.alice)
    bob_page = open_ui(open_page, pair.bob)
    type_message(alice_page, "hello bob, from alice's page")
    expect(bob_page.locator("#messages .text")).to_have_text(
        ["hello bob, from alice's page"], timeout=LONG)
    type_message(bob_page, "hi alice!\nTwo lines, and <b>no</b> markup.")
    expect(alice_page.locator("#messages .text").last).to_have_text(
        "hi alice!\nTwo lines, and <b>no</b> markup.", timeout=LONG)
    assert browser_texts(alice_page) == browser_texts(bob_page) == pair.alice.texts()
    expect(alice_page.locator("#messages .message.mine .author")).to_have_text(pair.alice.name)
    screenshot(alice_page, "agent-ui-chat")


def test_agent_ui_loads_older_messages_when_scrolled_back(
    open_page: OpenPage, pair: Pair,
) -> None:
    texts = [f"message {n:03d}" for n in range(230)]
    for text in texts:
        pair.alice.send(text)
    page = open_ui(open_page, pair.alice)
    # The page opens on the newest window of 200 messages.
    expect(page.locator("#messages .message")).to_have_count(200, timeout=LONG)
    assert browser_texts(page) == texts[30:]
    scroller = page.locator("#chat-scroll")
    at_bottom = "(s) => s.scrollHeight - s.scrollTop - s.clientHeight < 2"
    assert scroller.evaluate(at_bottom), "the newest messages are in view on opening"
    # Scrolling to the top reads the page before it, with no click.
    scroller.evaluate("(s) => { s.scrollTop = 0; }")
    expect(page.locator("#messages .message")).to_have_count(230, timeout=LONG)
    expect(page.locator("#load-older")).to_be_hidden()
    assert browser_texts(page) == texts
    # The message that was at the top stays in view: older ones go above it.
    expect(page.locator("#messages .message", has_text="message 030")).to_be_in_viewport()
    assert not scroller.evaluate(at_bottom)
    screenshot(page, "agent-ui-older-loaded")


def test_member_list_shows_each_peers_link_state(open_page: OpenPage, pair: Pair) -> None:
    page = open_ui(open_page, pair.alice)
    bob_device = pair.bob.state()["device"]
    bob = page.locator(f"#members .member[data-device='{bob_device}']")
    expect(bob).to_have_attribute("data-state", "connected", timeout=LONG)
    expect(bob.locator(".link-state")).to_contain_text("direct P2P")
    # A frozen peer stops answering pings: the link fails and the page says it is being
    # retried; once the peer runs again, the link comes back.
    os.kill(pair.bob.pid, signal.SIGSTOP)
    try:
        # The state and its label in one look: on a busy machine the retry may already have
        # turned the link to "connecting" by a second look.
        failed = page.locator(f"#members .member[data-device='{bob_device}'][data-state='failed']"
                              " .link-state")
        expect(failed).to_have_text("reconnecting", timeout=LONG)
        screenshot(page, "agent-ui-peer-reconnecting")
    finally:
        os.kill(pair.bob.pid, signal.SIGCONT)
    expect(bob).to_have_attribute("data-state", "connected", timeout=LONG)
    pair.bob.stop()
    expect(bob).to_have_count(0, timeout=LONG)
    assert state_of(page) == {}


def test_own_message_shows_its_delivery_marks(open_page: OpenPage, pair: Pair) -> None:
    page = open_ui(open_page, pair.alice)
    type_message(page, "did this reach everyone?")
    mark = page.locator("#messages .message.mine .delivery")
    expect(mark).to_have_text("1/1 peers · server ✓", timeout=LONG)
    expect(mark).to_have_attribute("data-server", "yes")
    expect(mark).to_have_attribute("data-all-peers", "yes")
    bob_page = open_ui(open_page, pair.bob)
    expect(bob_page.locator("#messages .message .delivery")).to_have_text("")


def test_server_banner_appears_while_the_server_is_down_and_clears_when_it_returns(
    open_page: OpenPage, own_server: Server, tmp_path: Path,
) -> None:
    running = start_pair(own_server, tmp_path)
    try:
        page = open_ui(open_page, running.alice)
        banner = page.locator("#server-banner")
        expect(banner).to_be_hidden(timeout=LONG)
        own_server.stop()
        expect(banner).to_be_visible(timeout=LONG)
        expect(banner).to_contain_text("The server is unreachable")
        type_message(page, "queued for the server")
        expect(banner).to_contain_text("1 message waiting to reach the server", timeout=LONG)
        mark = page.locator("#messages .message.mine .delivery")
        expect(mark).to_have_text("1/1 peers · server pending", timeout=LONG)
        poll(lambda: "queued for the server" in running.bob.texts(), timeout=60,
             message="bob got the message peer to peer")
        screenshot(page, "agent-ui-server-down")
        own_server.start()
        expect(banner).to_be_hidden(timeout=LONG)
        expect(mark).to_have_text("1/1 peers · server ✓", timeout=LONG)
    finally:
        running.alice.stop()
        running.bob.stop()
