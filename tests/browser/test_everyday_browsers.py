"""Everyday browsers (issue 15): Chromium as people run it hides its host addresses behind
mDNS `.local` names that nothing in the sealed network resolves, so two such pages never link
to each other. They still chat, both ways and with an agent linked to both, while the server is
up and after it is killed: what one page writes reaches the other through the server or
through the agent, and the message's path says which."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    OpenPage,
    browser_texts,
    join_room_page,
    send_from_page,
    state_of,
    unique,
)
from tests.browser.stack import Agent, Server, start_agent
from tests.helpers import poll

LONG = 60_000  # ms: generous, the 2-core machine is shared

HOST_CANDIDATES = """async () => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.createDataChannel("probe");
  const found = [];
  const complete = new Promise((resolve) => {
    pc.onicecandidate = (e) => (e.candidate ? found.push(e.candidate.candidate) : resolve());
  });
  await pc.setLocalDescription(await pc.createOffer());
  await complete;
  pc.close();
  return found.filter((c) => c.includes(" typ host")).map((c) => c.split(" ")[4]);
}"""


def wait_everyone_holds(pages: list[Page], agent: Agent, wanted: list[str]) -> None:
    """Every page and the agent show exactly the wanted messages, each once, in one order."""
    for page in pages:
        poll(lambda page=page: sorted(browser_texts(page)) == sorted(wanted),  # type: ignore[misc]
             timeout=30, message=f"the page shows {wanted}")
    poll(lambda: sorted(agent.texts()) == sorted(wanted), timeout=30,
         message=f"{agent.name} holds {wanted}")
    orders = [browser_texts(page) for page in pages] + [agent.texts()]
    assert all(order == orders[0] for order in orders), orders


def received_step(page: Page, text: str) -> str:
    """The text of the `received` step of the message showing `text`, from its path."""
    message = page.locator("#messages .message").filter(
        has=page.locator(".text", has_text=text))
    message.locator("button.path-toggle").click()
    step = message.locator(".path-steps li[data-what=received]")
    expect(step).to_have_count(1, timeout=LONG)
    received: str = step.inner_text()
    message.locator("button.path-toggle").click()
    return received


def test_everyday_browsers_that_cannot_link_chat_through_the_server_and_an_agent(
    open_everyday_page: OpenPage, own_server: Server, tmp_path: Path,
) -> None:
    room = unique("room")
    alice = start_agent(own_server, unique("alice"), room, tmp_path / "alice")
    try:
        dave, erin = unique("dave"), unique("erin")
        own_server.register(dave)
        own_server.register(erin)
        first, second = open_everyday_page(), open_everyday_page()
        join_room_page(first, own_server, dave, room)
        join_room_page(second, own_server, erin, room)
        hosts = first.evaluate(HOST_CANDIDATES)
        assert hosts and all(h.endswith(".local") for h in hosts), hosts
        for page in (first, second):
            poll(lambda page=page: state_of(page).get(alice.name) == "connected",  # type: ignore[misc]
                 timeout=60, message="the page linked to the agent")
        poll(lambda: alice.connected_to({dave, erin}), timeout=60,
             message="the agent linked to both pages")

        send_from_page(first, "dave, server up")
        send_from_page(second, "erin, server up")
        alice.send("alice, server up")
        wanted = ["dave, server up", "erin, server up", "alice, server up"]
        wait_everyone_holds([first, second], alice, wanted)

        own_server.stop()
        for page in (first, second):
            expect(page.locator("#server-banner")).to_be_visible(timeout=LONG)
        send_from_page(first, "dave, server down")
        send_from_page(second, "erin, server down")
        alice.send("alice, server down")
        wanted += ["dave, server down", "erin, server down", "alice, server down"]
        wait_everyone_holds([first, second], alice, wanted)

        assert f"via {alice.name}" in received_step(second, "dave, server down")
        assert f"via {alice.name}" in received_step(first, "erin, server down")
        # The two pages never linked: every message between them went another way.
        assert state_of(first).get(erin) != "connected"
        assert state_of(second).get(dave) != "connected"
    finally:
        alice.stop()
