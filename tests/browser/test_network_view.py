"""The Network panel (docs/network-view.md) in real Chromium, over real agents and a real
server: the graph follows links and the server as they fail and come back, the timeline says
what happened, and a message's path shows where it went.

One room carries the whole fault story (three agents are slow to start on a shared 2-core
machine): all linked, a message's path, carol killed, the server killed with messages
queued, the screenshots, then both restarted."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import threading
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import PHONE, OpenPage, join_room_page, screenshot, unique
from tests.browser.stack import Agent, Server, start_agent, wait_agents_linked
from tests.helpers import ROOT, poll
from tests.peer_agent.rogue import RoguePeer
from tests.peer_agent.signal_bus import wait_until

LONG = 60_000  # ms: generous, the 2-core machine is shared
RTT = re.compile(r"^\d+(\.\d)? ms$")
DOCS_PICTURE = ROOT / "docs" / "network-view.png"


def node(page: Page, kind: str, device: str | None = None) -> Locator:
    selector = f"svg#network-graph g.node[data-kind={kind}]"
    if device is not None:
        selector += f"[data-device='{device}']"
    return page.locator(selector)


def peer_edge(page: Page, device: str) -> Locator:
    return page.locator(f"svg#network-graph g.edge[data-kind=peer][data-device='{device}']")


def server_edge(page: Page) -> Locator:
    return page.locator("svg#network-graph g.edge[data-kind=server]")


def outbox_shown(page: Page) -> int:
    return int(server_edge(page).get_attribute("data-outbox") or "-1")


def expect_linked(page: Page, device: str) -> None:
    edge = peer_edge(page, device)
    expect(edge).to_have_attribute("data-state", "connected", timeout=LONG)
    expect(edge.locator(".edge-state")).to_have_text("connected")
    expect(edge.locator(".rtt")).to_have_text(RTT, timeout=LONG)
    expect(node(page, "peer", device)).to_have_count(1)


def between(page: Page, one: str, other: str) -> Locator:
    """The edge drawn for the link between two other devices, from their own reports."""
    a, b = sorted((one, other))
    return page.locator(
        f"svg#network-graph g.edge[data-kind=reported][data-from='{a}'][data-to='{b}']")


def type_message(page: Page, text: str) -> None:
    page.fill("#composer-text", text)
    page.click("#composer button[type=submit]")
    expect(page.locator("#composer-text")).to_have_value("", timeout=LONG)


def open_network_tab_on_a_phone(page: Page) -> None:
    """As a person on a phone would: the Network tab, then the picture."""
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.click("#tab-network")
    expect(page.locator("#network-graph")).to_be_visible()
    expect(page.locator("#messages")).to_be_hidden()


def test_network_view_follows_a_peer_and_the_server_failing_and_returning(
    open_page: OpenPage, own_server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    names = {who: unique(who) for who in ("alice", "bob", "carol")}
    agents: dict[str, Agent] = {}
    try:
        for who, name in names.items():
            agents[who] = start_agent(own_server, name, room, tmp_path / who)
        alice, bob, carol = agents["alice"], agents["bob"], agents["carol"]
        wait_agents_linked(list(agents.values()), set(names.values()))
        devices = {who: agent.state()["device"] for who, agent in agents.items()}

        # (a) Everyone linked: the graph shows alice (self), bob, carol and the server.
        page = open_page()
        page.goto(alice.url + "/")
        expect(node(page, "self", devices["alice"])).to_have_count(1, timeout=LONG)
        expect(node(page, "self").locator(".name")).to_have_text(names["alice"])
        for who in ("bob", "carol"):
            expect_linked(page, devices[who])
            expect(page.locator(f"svg#network-graph g.edge[data-kind=presence]"
                                f"[data-device='{devices[who]}']")).to_have_count(1)
        expect(node(page, "server")).to_have_attribute("data-state", "connected")
        expect(server_edge(page)).to_have_attribute("data-state", "connected")
        expect(server_edge(page)).to_have_attribute("data-outbox", "0")
        expect(server_edge(page).locator(".outbox")).to_have_text("outbox 0")
        expect(page.locator("#network-summary")).to_have_text(
            "server connected · 2 of 2 peers linked directly")
        expect(page.locator("#timeline li[data-kind=link]").first).to_be_attached(timeout=LONG)
        # The link between bob and carol, as they report it: the whole mesh is on the graph.
        expect(between(page, devices["bob"], devices["carol"])).to_have_attribute(
            "data-state", "connected", timeout=LONG)
        expect(page.locator("svg#network-graph g.edge[data-kind=reported]")).to_have_count(1)

        # (d) A message's path: sent to bob and carol, stored by both, uploaded at a cursor.
        type_message(page, "where does this one go?")
        message = page.locator("#messages .message.mine").last
        expect(message.locator(".delivery")).to_have_text("2/2 peers · server ✓", timeout=LONG)
        # The server's broadcast can mark the message stored before alice's own upload is
        # acknowledged; the timeline says when that upload is.
        expect(page.locator("#timeline li[data-kind=uploaded]").first).to_contain_text(
            re.compile(r"server stored \d+ messages? \(up to cursor \d+\)"), timeout=LONG)
        message.locator("button.path-toggle").click()
        steps = message.locator(".path-steps li")
        acked = message.locator(".path-steps li[data-what=acked]")
        expect(acked).to_have_count(2, timeout=LONG)
        sent = message.locator(".path-steps li[data-what=sent]")
        expect(sent).to_have_count(1)
        expect(sent).to_contain_text(names["bob"])
        expect(sent).to_contain_text(names["carol"])
        expect(acked.filter(has_text=names["bob"])).to_have_count(1)
        expect(acked.filter(has_text=names["carol"])).to_have_count(1)
        uploaded = message.locator(".path-steps li[data-what=uploaded]")
        expect(uploaded).to_have_count(1)
        expect(uploaded).to_contain_text(re.compile(r"cursor \d+"))
        expect(message.locator(".path-steps li[data-what=authored]")).to_have_count(1)
        assert steps.first.get_attribute("data-what") == "authored"
        # The button toggles: closed, then open again (fetched afresh).
        message.locator("button.path-toggle").click()
        expect(message.locator(".path")).to_have_count(0)
        message.locator("button.path-toggle").click()
        expect(acked).to_have_count(2, timeout=LONG)
        expect(message.locator("button.path-toggle")).to_have_attribute("aria-expanded", "true")
        screenshot(page, "network-view-path")

        # (b) carol's agent dies: her edge fails or closes, or she is offline.
        os.kill(carol.pid, signal.SIGKILL)
        carol.stop()
        gone = page.locator(
            f"svg#network-graph g.edge[data-kind=peer][data-device='{devices['carol']}']"
            ":is([data-state=failed], [data-state=closed]), "
            f"svg#network-graph g.node[data-kind=offline][data-device='{devices['carol']}']")
        expect(gone.first).to_be_attached(timeout=LONG)
        expect(peer_edge(page, devices["bob"])).to_have_attribute("data-state", "connected")
        # bob reports his link to carol down too (or she is dropped from the graph's links).
        expect(page.locator(f"svg#network-graph g.edge[data-kind=reported][data-state=connected]"
                            f"[data-to='{devices['carol']}'], svg#network-graph g.edge"
                            f"[data-kind=reported][data-state=connected]"
                            f"[data-from='{devices['carol']}']")).to_have_count(0, timeout=LONG)

        # (c) the server dies: its edge is down, and alice's messages wait in the outbox.
        own_server.stop()
        expect(server_edge(page)).to_have_attribute("data-state", "down", timeout=LONG)
        expect(node(page, "server")).to_have_attribute("data-state", "down")
        expect(page.locator("#network-graph g.edge[data-kind=presence]")).to_have_count(0)
        for n in range(3):
            type_message(page, f"queued while the server is down {n}")
        expect(server_edge(page)).to_have_attribute("data-outbox", re.compile(r"^([3-9]|\d\d+)$"),
                                                    timeout=LONG)
        assert outbox_shown(page) >= 3
        poll(lambda: "queued while the server is down 2" in bob.texts(), timeout=60,
             message="bob got the queued messages peer to peer")
        expect(server_edge(page).locator(".outbox")).to_have_text(
            re.compile(r"^outbox ([3-9]|\d\d+)$"))

        # (e) the timeline says what happened, newest first.
        lost = page.locator("#timeline li[data-kind=server]", has_text="lost")
        expect(lost.first).to_be_attached(timeout=LONG)
        expect(lost.first.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
        carol_events = page.locator("#timeline li", has_text=names["carol"])
        expect(carol_events.first).to_be_attached(timeout=LONG)
        seqs = [int(s) for s in page.locator("#timeline li").evaluate_all(
            "(items) => items.map((li) => li.dataset.seq)")]
        assert seqs == sorted(seqs, reverse=True), "the newest event comes first"
        expect(page.locator("#messages .message.mine .delivery").last).to_contain_text(
            "server pending")

        open_network_tab_on_a_phone(page)
        desktop = screenshot(page, "network-view-faults")[1]
        if os.environ.get("GIBBERISH_DOCS_SCREENSHOTS") == "1":
            shutil.copyfile(desktop, DOCS_PICTURE)

        # Both come back: the server first (carol needs it to find the room), then carol
        # with the same data dir, hence the same device.
        own_server.start()
        expect(server_edge(page)).to_have_attribute("data-state", "connected", timeout=LONG)
        expect(server_edge(page)).to_have_attribute("data-outbox", "0", timeout=LONG)
        back = page.locator("#timeline li[data-kind=server]").first
        expect(back).to_have_attribute("data-state", "connected", timeout=LONG)
        agents["carol"] = carol = start_agent(own_server, names["carol"], room, tmp_path / "carol")
        assert carol.state()["device"] == devices["carol"]
        expect_linked(page, devices["carol"])
        expect_linked(page, devices["bob"])
        expect(between(page, devices["bob"], devices["carol"])).to_have_attribute(
            "data-state", "connected", timeout=LONG)
        expect(node(page, "offline")).to_have_count(0)
        expect(page.locator("#network-summary")).to_have_text(
            "server connected · 2 of 2 peers linked directly", timeout=LONG)
        expect(page.locator("#server-banner")).to_be_hidden()
    finally:
        for agent in agents.values():
            agent.stop()


def test_browser_peer_page_shows_the_same_network_panel(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice = start_agent(server, unique("alice"), room, tmp_path / "alice")
    try:
        alice_device = alice.state()["device"]
        dora = unique("dora")
        server.register(dora)
        page = open_page()
        own_device = join_room_page(page, server, dora, room)
        expect(node(page, "self", own_device)).to_have_count(1, timeout=LONG)
        expect_linked(page, alice_device)
        expect(node(page, "peer", alice_device).locator(".name")).to_have_text(alice.name)
        expect(server_edge(page)).to_have_attribute("data-state", "connected", timeout=LONG)
        expect(server_edge(page)).to_have_attribute("data-outbox", "0", timeout=LONG)
        # The timeline of the page's own peer, and a message's path from it.
        expect(page.locator("#timeline li").first).to_be_attached(timeout=LONG)
        page.fill("#composer-text", "hello alice, from a browser")
        page.press("#composer-text", "Enter")
        message = page.locator("#messages .message.mine").last
        expect(message.locator(".delivery")).to_have_text("1/1 peers · server ✓", timeout=LONG)
        message.locator("button.path-toggle").click()
        expect(message.locator(".path-steps li[data-what=acked]")).to_have_count(1, timeout=LONG)
        expect(message.locator(".path-steps li[data-what=sent]")).to_contain_text(alice.name)
        open_network_tab_on_a_phone(page)
        screenshot(page, "network-view-browser-peer")
    finally:
        alice.stop()


def test_an_open_page_follows_its_agent_through_a_restart(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    name = unique("alice")
    alice = start_agent(server, name, room, tmp_path / "alice")
    try:
        page = open_page()
        page.goto(alice.url + "/")
        started = page.locator("#timeline li[data-kind=started]")
        expect(started).to_have_count(1, timeout=LONG)
        expect(server_edge(page)).to_have_attribute("data-state", "connected", timeout=LONG)
        port = int(alice.url.rsplit(":", 1)[1])
        alice.stop()
        # Restarted on the same UI port, the page reconnects by itself: the new process's
        # events follow a divider, the old ones stay below it.
        alice = start_agent(server, name, room, tmp_path / "alice", ui_port=port)
        expect(page.locator("#timeline li[data-kind=restart]")).to_have_count(1, timeout=LONG)
        expect(started).to_have_count(2, timeout=LONG)
        kinds = page.locator("#timeline li").evaluate_all(
            "(items) => items.map((li) => li.dataset.kind)")
        assert kinds.index("started") < kinds.index("restart") < len(kinds) - 1, kinds
        expect(server_edge(page)).to_have_attribute("data-state", "connected", timeout=LONG)
    finally:
        alice.stop()


def test_the_browser_peers_timeline_names_forged_malformed_and_replayed_frames(
    open_page: OpenPage, server: Server,
) -> None:
    """A rogue peer (real aiortc, in its own thread and event loop) sends the page a tampered
    message, a frame that is not JSON and one genuine message twice."""
    room = unique("room")
    ivy = unique("ivy")
    server.register(ivy)
    page = open_page()
    device = join_room_page(page, server, ivy, room)
    sent = threading.Event()
    stop = threading.Event()
    failure: list[BaseException] = []
    genuine: list[str] = []

    async def rogue_body() -> None:
        rogue = RoguePeer(server.url, room, unique("rogue"))
        await rogue.start()
        try:
            await wait_until(lambda: rogue.connected_to(device), timeout=60,
                             message="the rogue's channel to the page")
            good = rogue.envelope("a genuine message")
            genuine.append(good.id)
            tampered = dict(rogue.envelope("signed text").to_dict(), text="altered text")
            for frame in ({"t": "msg", "env": tampered}, "this is not JSON",
                          {"t": "msg", "env": good.to_dict()},
                          {"t": "msg", "env": good.to_dict()}):
                rogue.send_raw(device, frame)
            sent.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await rogue.close()

    def rogue_thread() -> None:
        try:
            asyncio.run(rogue_body())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            sent.set()

    thread = threading.Thread(target=rogue_thread, daemon=True)
    thread.start()
    try:
        assert sent.wait(timeout=90), "the rogue never sent its frames"
        assert not failure, failure
        expect(page.locator("#messages .text")).to_have_text(["a genuine message"],
                                                             timeout=LONG)
        refused = page.locator("#timeline li[data-kind=refused]")
        for reason in ("bad_signature", "invalid_envelope",
                       re.compile(rf"replayed message from .*{re.escape(genuine[0])}")):
            expect(refused.filter(has_text=reason)).to_have_count(1, timeout=LONG)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
