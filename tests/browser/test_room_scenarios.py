"""The room scenarios (tests/scenarios/room.json) against the browser peer, in Chromium: the
same frames the Python room core is given (tests/peer_agent/test_room_scenarios.py), and the
same expectations.

The browser peer has no room core apart from its I/O: `BrowserPeer` (static/chat/browser-peer.js)
both decides and does. The seam taken is the closest one that takes frames in and shows what it
would do: a `BrowserPeer` with its real local log (IndexedDB) and its real rules, given frames
through `handleFrame` and link changes through `onPeerLink`, with its mesh replaced by a
recorder of what it sends and its server link by one that counts requests for the room's keys
(it is never connected). What it shows and refuses is read from the events it gives the chat UI;
the display order from its log's pages, as the UI reads them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import OpenPage, unique
from tests.browser.stack import Server
from tests.scenarios.scenario import ME, ROOM, SCENARIOS, concrete, outcome

RUN_IN_PAGE = """
async (arg) => {
  const { BrowserPeer } = await import('/static/chat/browser-peer.js');
  const { BrowserLog, loadOrCreateDeviceKey, openDatabase } =
    await import('/static/chat/browser-log.js');
  const { Roster } = await import('/static/chat/roster.js');
  const { envelopeId } = await import('/static/chat/protocol/envelope.js');
  const errors = [];
  const quiet = { debug() {}, info() {}, log() {}, warn() {},
                  error: (...args) => errors.push(args.map(String).join(' ')) };
  const peer = new BrowserPeer({ room: arg.room, owner: null, log: quiet });
  // What start() sets up, without the server: the user, the device key, the local log.
  peer.user = arg.user;
  peer.db = await openDatabase(arg.user);
  peer.key = await loadOrCreateDeviceKey(peer.db);
  peer.rosterRule = new Roster(peer.key.device);
  peer.store = new BrowserLog(peer.db, arg.room);
  await peer.store.load(peer.key.device);
  await peer.store.rememberKey(peer.key.device, peer.user, peer.key.publicKey, 'self');
  for (const d of arg.known) {
    await peer.store.rememberKey(d.device, d.name, d.public_key, 'server');
    peer.roster.set(d.device, { user: d.name, device: d.device, public_key: d.public_key });
  }
  const sent = [];
  peer.mesh = /** a recorder in the mesh's place */ ({
    links: new Map(),
    send(device, text) { sent.push([device, text]); return true; },
    broadcast(text) { sent.push(['*', text]); return []; },
    drained: async () => true,
    nudge() { return false; },
    updateRoster() {},
  });
  let asked = 0;
  peer.server.roomKeys = async () => { asked += 1; return []; };
  const shown = [];
  const refused = [];
  peer.subscribe((event) => {
    if (event.type === 'message') shown.push(event.message.id);
    if (event.type === 'event' && event.event.kind === 'refused') {
      refused.push(String(event.event.reason).split(':')[0]);
    }
  });
  // Receipts and uploads wait for the log's group commit to IndexedDB.
  const settle = async () => {
    await new Promise((resolve) => setTimeout(resolve, 0));
    await peer.store.flushed();
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  for (const step of arg.steps) {
    if (step.link_up) {
      const known = peer.roster.get(step.link_up);
      peer.onPeerLink(known, 'connected');
    } else if (step.post !== undefined) {
      await peer.send(step.post);
    } else {
      await peer.handleFrame({ user: step.user, device: step.from, public_key: '' }, step.text);
    }
    // The catch-up turn a step may have woken runs on a timer of 0 ms.
    await settle();
  }
  await settle();
  const held = (await peer.store.page(null, 500)).envs.map(envelopeId);
  return { sent, stored: held, shown, display: held, refused, asked_for_keys: asked, errors,
           me: peer.key.device };
}
"""


@pytest.fixture
def page(open_page: OpenPage, server: Server) -> Iterator[Page]:
    """A page of the server's origin (a secure context, so WebCrypto is there)."""
    opened = open_page()
    opened.goto(server.url + "/")
    yield opened


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_the_browser_peer_does_what_the_scenario_says(scenario: dict[str, Any],
                                                       page: Page) -> None:
    made = concrete(scenario, int(time.time() * 1000))
    seen = page.evaluate(RUN_IN_PAGE, {
        "room": ROOM, "user": unique("scenario"), "steps": made.steps,
        "known": [asdict(d) for d in made.known()]})
    assert seen.pop("errors") == []
    names = {**made.names, seen.pop("me"): ME}
    assert outcome(seen, names) == scenario["expect"]

