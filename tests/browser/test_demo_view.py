"""The guided fault demo watched in Chromium, as a newcomer would: `python -m demo
--faults --step` runs in the sealed namespace, the test opens alice's printed UI and presses
Enter step by step, and alice's Network panel shows each stage of the story: the demo's
announcements in the timeline, the server down with bob's message waiting in the outbox, and
the server back with the outbox drained. The picture of the panel in the middle of the story
is the one the README shows (copied to docs/ with GIBBERISH_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, screenshot
from tests.browser.test_network_view import node, peer_edge, server_edge
from tests.demo.demo_process import PROMPT, STEPS, Demo, leftovers
from tests.helpers import ROOT

LONG = 60_000  # ms: generous, the 2-core machine is shared
DOCS_PICTURE = ROOT / "docs" / "network-view.png"


def next_step(demo: Demo, number: int) -> None:
    demo.wait_for(re.escape(PROMPT), 120)
    demo.enter()
    demo.wait_for(rf"^Step {number}/{STEPS} reached", 120)


@pytest.mark.timeout(420)
def test_the_network_panel_tells_the_demos_story(open_page: OpenPage, tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo", "--step")
    try:
        alice_url = demo.wait_for(r"^alice +(http://127\.0\.0\.1:\d+)/", 120).group(1)
        page = open_page()
        page.goto(alice_url + "/")
        expect(node(page, "self")).to_have_count(1, timeout=LONG)
        for number in (1, 2):
            next_step(demo, number)
        state = page.evaluate("() => fetch('/api/state').then((r) => r.json())")
        devices = {p["user"]: p["device"] for p in state["peers"]}
        for user in ("bob", "carol"):
            expect(peer_edge(page, devices[user])).to_have_attribute(
                "data-state", "connected", timeout=LONG)
        notes = page.locator("#timeline li[data-kind=note]")
        expect(notes.first).to_contain_text(f"Step 2/{STEPS} reached", timeout=LONG)

        # Steps 3 and 4: the server killed, bob writes; alice holds his message and, like
        # every holder, keeps it in her outbox for the server.
        for number in (3, 4):
            next_step(demo, number)
        expect(server_edge(page)).to_have_attribute("data-state", "down", timeout=LONG)
        expect(server_edge(page)).to_have_attribute("data-outbox", re.compile(r"^[1-9]\d*$"),
                                                    timeout=LONG)
        expect(page.locator("#messages .text").last).to_have_text(
            "bob here, written while the server is down", timeout=LONG)
        for user in ("bob", "carol"):
            expect(peer_edge(page, devices[user])).to_have_attribute("data-state", "connected")
        expect(notes.first).to_contain_text(f"Step 4/{STEPS} reached", timeout=LONG)
        expect(page.locator("#timeline li[data-kind=server]").first).to_contain_text("lost")
        page.locator("#messages .message").last.locator("button.path-toggle").click()
        expect(page.locator("#messages .message").last.locator(
            ".path-steps li[data-what=received]")).to_contain_text("bob", timeout=LONG)
        desktop = screenshot(page, "network-view-demo")[1]
        if os.environ.get("GIBBERISH_DOCS_SCREENSHOTS") == "1":
            shutil.copyfile(desktop, DOCS_PICTURE)

        # Step 5: the server is back and the outbox drains.
        next_step(demo, 5)
        expect(server_edge(page)).to_have_attribute("data-state", "connected", timeout=LONG)
        expect(server_edge(page)).to_have_attribute("data-outbox", "0", timeout=LONG)

        # Steps 6 and 7 without waiting (stdin closed): carol comes back, alice's second
        # device appears as a new peer of alice's page.
        assert demo.proc.stdin is not None
        demo.proc.stdin.close()
        demo.wait_for(rf"All {STEPS} steps reached their expected state", 240)
        expect(page.locator("svg#network-graph g.node[data-kind=peer]")).to_have_count(
            3, timeout=LONG)
        expect(peer_edge(page, devices["carol"])).to_have_attribute(
            "data-state", "connected", timeout=LONG)
        demo.wait_for(r"Ctrl-C stops it all", 30)
        os.kill(demo.proc.pid, signal.SIGINT)
        assert demo.wait(timeout=60) == 0, demo.output()
    finally:
        demo.stop()
    assert leftovers(demo) == []
