"""The browser peer (/rooms/<room>) in real Chromium: it signs in on the page, keeps its
device key in IndexedDB, meshes with Python agents and other browsers over WebRTC, and shows
every message in the same order as everyone else."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    OpenPage,
    browser_texts,
    join_room_page,
    screenshot,
    send_from_page,
    state_of,
    unique,
)
from tests.browser.stack import PASSWORD, Agent, Server, start_agent, wait_agents_linked
from tests.helpers import poll

LONG = 60_000  # ms: generous, the 2-core machine is shared


def wait_page_linked(page: Page, users: set[str]) -> None:
    expect_users = sorted(users)
    poll(lambda: all(state_of(page).get(u) == "connected" for u in expect_users),
         timeout=60, message=f"the page linked to {expect_users}")


def test_newcomer_is_asked_to_sign_in_and_lands_in_the_room(
    open_page: OpenPage, server: Server,
) -> None:
    room = unique("lobby")
    name = unique("newcomer")
    page = open_page()
    page.goto(f"{server.url}/rooms/{room}")
    expect(page.locator("#joining")).to_have_text(
        f"Sign in, or create an account below, to join #{room}.")
    screenshot(page, "sign-in-to-join")
    page.fill("#register-username", name)
    page.fill("#register-password", PASSWORD)
    page.click("#register-form button[type=submit]")
    page.wait_for_url(f"{server.url}/rooms/{room}")
    page.wait_for_selector("#chat[data-ready]", timeout=LONG)
    expect(page.locator("#chat")).to_have_attribute("data-ready", "yes")
    expect(page.locator("#empty-chat")).to_be_visible()
    expect(page.locator("#server-banner")).to_be_hidden(timeout=LONG)
    devices = server.api(server.login(name), "/api/me")["devices"]
    assert [d["id"] for d in devices] == [page.get_attribute("#chat", "data-device")]
    screenshot(page, "browser-peer-empty")


def test_device_key_stays_in_indexeddb_and_cannot_be_exported(
    open_page: OpenPage, server: Server,
) -> None:
    name = unique("keeper")
    server.register(name)
    room = unique("room")
    page = open_page()
    device = join_room_page(page, server, name, room)
    found = page.evaluate("""async (user) => {
      const { openDatabase, loadOrCreateDeviceKey } = await import('/static/chat/browser-log.js');
      const key = await loadOrCreateDeviceKey(await openDatabase(user));
      let exported = 'exported';
      try { await crypto.subtle.exportKey('pkcs8', key.privateKey); }
      catch (err) { exported = err.name; }
      return { device: key.device, extractable: key.privateKey.extractable, exported };
    }""", name)
    assert found == {"device": device, "extractable": False, "exported": "InvalidAccessError"}
    page.reload()
    page.wait_for_selector("#chat[data-ready]", timeout=LONG)
    assert page.get_attribute("#chat", "data-device") == device


def test_browser_peer_and_two_agents_chat_both_ways_in_the_same_order(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice = start_agent(server, unique("alice"), room, tmp_path / "alice")
    bob = start_agent(server, unique("bob"), room, tmp_path / "bob")
    try:
        wait_agents_linked([alice, bob], {alice.name, bob.name})
        carol = unique("carol")
        server.register(carol)
        page = open_page()
        join_room_page(page, server, carol, room)
        wait_page_linked(page, {alice.name, bob.name})
        wait_agents_linked([alice, bob], {alice.name, bob.name, carol})
        alice.send("hello from alice")
        send_from_page(page, "hello from the browser")
        bob.send("hello from bob")
        for n in range(3):
            send_from_page(page, f"browser {n}")
            alice.send(f"alice {n}")
        expected = 9
        poll(lambda: len(browser_texts(page)) == expected, timeout=60,
             message="the page shows every message")
        poll(lambda: len(alice.texts()) == expected and len(bob.texts()) == expected,
             timeout=60, message="the agents hold every message")
        shown = browser_texts(page)
        assert shown == alice.texts() == bob.texts()
        assert {"hello from alice", "hello from bob", "hello from the browser"} <= set(shown)
        expect(page.locator("#members .member[data-state=connected]")).to_have_count(2)
        # Each link says which way it goes, on the page and at the agents: host to host in
        # the sealed namespace (or peer-reflexive, an address learned from the checks).
        expect(page.locator("#members .member[data-state=connected][data-path=host], "
                            "#members .member[data-state=connected][data-path=prflx]")
               ).to_have_count(2, timeout=LONG)
        for agent in (alice, bob):
            peer = next(p for p in agent.state()["peers"] if p["user"] == carol)
            assert peer["path"]["kind"] in ("host", "prflx"), peer
        # Link reports both ways: the page draws the agents' link to each other, and the
        # agents hear the page's links.
        alice_device, bob_device = alice.state()["device"], bob.state()["device"]
        pair = sorted((alice_device, bob_device))
        expect(page.locator(f"svg#network-graph g.edge[data-kind=reported][data-from='{pair[0]}']"
                            f"[data-to='{pair[1]}']")).to_have_attribute(
            "data-state", "connected", timeout=LONG)
        page_device = page.get_attribute("#chat", "data-device")

        def page_reports() -> set[str]:
            entry = next(p for p in alice.state()["peers"] if p["device"] == page_device)
            return {link["device"] for link in entry["links"] if link["state"] == "connected"}

        poll(lambda: page_reports() == {alice_device, bob_device}, timeout=30,
             message="the page's report of its links reaches alice")
        screenshot(page, "browser-peer-with-agents")
    finally:
        alice.stop()
        bob.stop()


def test_two_browser_peers_chat_with_each_other(open_page: OpenPage, server: Server) -> None:
    room = unique("room")
    dave, erin = unique("dave"), unique("erin")
    server.register(dave)
    server.register(erin)
    first, second = open_page(), open_page()
    join_room_page(first, server, dave, room)
    join_room_page(second, server, erin, room)
    wait_page_linked(first, {erin})
    wait_page_linked(second, {dave})
    for page in (first, second):
        expect(page.locator("#members .member[data-state=connected]")).to_have_attribute(
            "data-path", "host", timeout=LONG)
        expect(page.locator("svg#network-graph g.edge[data-kind=peer]")).to_have_attribute(
            "data-path", "host", timeout=LONG)
    send_from_page(first, "hi erin, from dave's browser")
    expect(second.locator("#messages .text").last).to_have_text(
        "hi erin, from dave's browser", timeout=LONG)
    send_from_page(second, "hi dave, from erin's browser")
    expect(first.locator("#messages .text").last).to_have_text(
        "hi dave, from erin's browser", timeout=LONG)
    assert browser_texts(first) == browser_texts(second)
    expect(first.locator("#messages .message.mine .delivery").first).to_have_text(
        "1/1 peers · server ✓", timeout=LONG)


def test_browser_peer_reads_the_rooms_history_from_the_server(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice = start_agent(server, unique("alice"), room, tmp_path / "alice")
    try:
        for n in range(5):
            alice.send(f"before you came {n}")
        poll(lambda: alice.state()["server"]["outbox"] == 0, timeout=60,
             message="alice's messages reached the server")
    finally:
        alice.stop()
    frank = unique("frank")
    server.register(frank)
    page = open_page()
    join_room_page(page, server, frank, room)
    poll(lambda: browser_texts(page) == [f"before you came {n}" for n in range(5)], timeout=60,
         message="the page shows the server's history")
    assert state_of(page) == {}


def test_browser_peer_keeps_chatting_while_the_server_is_down(
    open_page: OpenPage, own_server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice = start_agent(own_server, unique("alice"), room, tmp_path / "alice")
    try:
        grace = unique("grace")
        own_server.register(grace)
        page = open_page()
        join_room_page(page, own_server, grace, room)
        wait_page_linked(page, {alice.name})
        own_server.stop()
        banner = page.locator("#server-banner")
        expect(banner).to_be_visible(timeout=LONG)
        send_from_page(page, "sent while the server was down")
        poll(lambda: "sent while the server was down" in alice.texts(), timeout=60,
             message="alice got the message peer to peer")
        expect(banner).to_contain_text("1 message waiting", timeout=LONG)
        assert state_of(page) == {alice.name: "connected"}
        screenshot(page, "browser-peer-server-down")
        own_server.start()
        expect(banner).to_be_hidden(timeout=LONG)
        expect(page.locator("#messages .message.mine .delivery")).to_contain_text(
            "server ✓", timeout=LONG)
        stored = own_server.api(own_server.login(grace), f"/api/rooms/{room}/messages")
        assert "sent while the server was down" in [m["text"] for m in stored["messages"]]
    finally:
        alice.stop()


def test_markup_in_a_message_is_shown_as_text_and_never_runs(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice = start_agent(server, unique("alice"), room, tmp_path / "alice")
    try:
        henry = unique("henry")
        server.register(henry)
        page = open_page()
        join_room_page(page, server, henry, room)
        wait_page_linked(page, {alice.name})
        attacks = ["<img src=x onerror=\"window.__xss = 'img'\">",
                   "<script>window.__xss = 'script'</script>"]
        for text in attacks:
            alice.send(text)
        poll(lambda: browser_texts(page) == attacks, timeout=60,
             message="the page shows both messages")
        assert page.locator("#messages img, #messages script").count() == 0
        assert page.evaluate("() => window.__xss") is None
    finally:
        alice.stop()


def test_second_tab_of_the_same_user_does_not_join(
    open_page: OpenPage, server: Server,
) -> None:
    room = unique("room")
    name = unique("ivy")
    server.register(name)
    page = open_page()
    join_room_page(page, server, name, room)
    # Another room too: the tabs would share one device key, and an agent in both rooms keeps
    # one connection per device, which two tabs would fight over.
    for other_room in (room, unique("elsewhere")):
        second = page.context.new_page()
        second.goto(f"{server.url}/rooms/{other_room}")
        second.wait_for_selector("#chat[data-ready]", timeout=LONG)
        expect(second.locator("#chat")).to_have_attribute("data-ready", "error")
        expect(second.locator("#chat")).to_contain_text("already open in another tab")
        second.close()


def test_member_who_leaves_disappears_from_the_member_list(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice: Agent = start_agent(server, unique("alice"), room, tmp_path / "alice")
    try:
        jack = unique("jack")
        server.register(jack)
        page = open_page()
        join_room_page(page, server, jack, room)
        wait_page_linked(page, {alice.name})
    finally:
        alice.stop()
    poll(lambda: alice.name not in state_of(page), timeout=60,
         message="the page noticed alice left")
