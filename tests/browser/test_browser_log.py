"""The browser peer's log in real Chromium: a message is shown and sent before IndexedDB holds
it (group commit), so what the page showed as sent must survive a reload or a tab closed
before the commit, once each and never under a seq used twice (docs/browser-peer.md, "When a
message is durable")."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

from tests.browser.conftest import OpenPage, join_room_page, unique
from tests.browser.stack import Server
from tests.helpers import poll

WAIT_MS = 30_000  # every wait of these tests: well under the suite's 120 s per test
BURST = 40

# Send `count` messages through the composer at once (each Enter right after the other, none
# waiting for the one before), then wait until every one is in the list; at most `ms`.
BURST_SEND = """async ({ prefix, count, ms }) => {
  const list = document.getElementById('messages');
  const text = document.getElementById('composer-text');
  for (let i = 0; i < count; i++) {
    text.value = `${prefix} ${i}`;
    text.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true,
                                                     cancelable: true }));
  }
  const deadline = performance.now() + ms;
  const shown = () => [...list.querySelectorAll('.message.mine .text')]
    .filter((n) => n.textContent.startsWith(`${prefix} `)).length;
  while (shown() < count) {
    if (performance.now() > deadline) throw new Error(`${shown()} of ${count} shown in ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}"""

# This device's records of `room` in the page's IndexedDB log: [seq, text, held by the
# server] in seq order.
STORED = """async ({ user, room }) => {
  const { openDatabase } = await import('/static/chat/browser-log.js');
  const db = await openDatabase(user);
  const tx = db.transaction('messages', 'readonly');
  const rows = await new Promise((resolve, reject) => {
    const request = tx.objectStore('messages').index('room').getAll(room);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  return rows.map((r) => [r.seq, r.env.text, r.onServer]).sort((a, b) => a[0] - b[0]);
}"""

# In another tab of the same profile: hold a read-write transaction on the log's stores, so
# the room page's group commit waits behind it, until `globalThis.release` is set (or `ms`).
HOLD_LOG = """async ({ user, ms }) => {
  const { openDatabase } = await import('/static/chat/browser-log.js');
  const db = await openDatabase(user);
  globalThis.release = false;
  const tx = db.transaction(['messages', 'meta'], 'readwrite');
  const deadline = performance.now() + ms;
  const store = tx.objectStore('meta');
  const spin = () => {
    if (globalThis.release || performance.now() > deadline) return;
    store.get('nothing').onsuccess = spin;
  };
  spin();
  globalThis.held = new Promise((resolve) => { tx.oncomplete = () => { db.close(); resolve(); }; });
}"""

# The journal of own messages not yet committed, as the page left it in localStorage.
JOURNALLED = """({ user, room }) => {
  const raw = localStorage.getItem(`gibberish:${user}:journal:${room}`);
  return raw ? JSON.parse(raw).length : 0;
}"""


def texts_shown(page: Page, prefix: str) -> list[str]:
    texts: list[str] = page.evaluate(
        "(prefix) => [...document.querySelectorAll('#messages .message .text')]"
        ".map((n) => n.textContent).filter((t) => t.startsWith(prefix + ' '))", prefix)
    return texts


def stored(page: Page, user: str, room: str) -> list[tuple[int, str]]:
    rows: list[Any] = page.evaluate(STORED, {"user": user, "room": room})
    return [(int(seq), str(text)) for seq, text, _ in rows]


def reopen(page: Page, server: Server, room: str) -> None:
    page.goto(f"{server.url}/rooms/{room}")
    page.wait_for_selector("#chat[data-ready]", timeout=WAIT_MS)
    assert page.get_attribute("#chat", "data-ready") == "yes", page.inner_text("#chat")


def assert_once_each_with_fresh_seqs(rows: list[tuple[int, str]], texts: list[str]) -> None:
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(rows) + 1)), f"seqs reused or skipped: {seqs}"
    assert sorted(text for _, text in rows) == sorted(texts)


def test_a_burst_sent_then_reloaded_is_held_once_with_no_seq_reused(
    open_page: OpenPage, server: Server,
) -> None:
    user, room = unique("burst"), unique("log")
    server.register(user)
    page = open_page()
    join_room_page(page, server, user, room)
    page.evaluate(BURST_SEND, {"prefix": "first", "count": BURST, "ms": WAIT_MS})
    # At once: some of the burst is likely still on its way to IndexedDB.
    reopen(page, server, room)
    sent = [f"first {i}" for i in range(BURST)]
    poll(lambda: sorted(texts_shown(page, "first")) == sorted(sent), timeout=WAIT_MS / 1000,
         message="the whole burst shown again after the reload, once each")
    page.evaluate(BURST_SEND, {"prefix": "second", "count": 5, "ms": WAIT_MS})
    sent += [f"second {i}" for i in range(5)]
    poll(lambda: len(stored(page, user, room)) == len(sent), timeout=WAIT_MS / 1000,
         message="everything committed")
    assert_once_each_with_fresh_seqs(stored(page, user, room), sent)
    reopen(page, server, room)
    assert sorted(texts_shown(page, "first") + texts_shown(page, "second")) == sorted(sent)


def test_a_tab_closed_before_the_commit_keeps_its_messages(
    open_page: OpenPage, server: Server,
) -> None:
    user, room = unique("closer"), unique("log")
    server.register(user)
    page = open_page()
    join_room_page(page, server, user, room)
    # A second tab of the same profile holds the log's stores: the room page's commit waits.
    holder = page.context.new_page()
    holder.goto(f"{server.url}/")
    holder.evaluate(HOLD_LOG, {"user": user, "ms": WAIT_MS})
    page.evaluate(BURST_SEND, {"prefix": "unsaved", "count": 5, "ms": WAIT_MS})
    assert page.evaluate(JOURNALLED, {"user": user, "room": room}) == 5, \
        "the shown messages wait in the journal"
    page.close()
    holder.evaluate("() => { globalThis.release = true; return globalThis.held; }")
    assert stored(holder, user, room) == [], "the closed tab's commit never ran"
    again = holder.context.new_page()
    reopen(again, server, room)
    sent = [f"unsaved {i}" for i in range(5)]
    assert sorted(texts_shown(again, "unsaved")) == sorted(sent)
    assert again.evaluate(JOURNALLED, {"user": user, "room": room}) == 0
    again.evaluate(BURST_SEND, {"prefix": "after", "count": 1, "ms": WAIT_MS})
    sent.append("after 0")
    poll(lambda: len(stored(again, user, room)) == len(sent), timeout=WAIT_MS / 1000,
         message="the new message committed")
    assert_once_each_with_fresh_seqs(stored(again, user, room), sent)
