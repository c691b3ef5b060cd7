"""A long room in real Chromium: the browser peer opens a room of 10,000 messages, keeps a
bounded window of them in the page, draws each new message with the same small amount of
work whatever the room's length, and pages older messages in when the reader scrolls up."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, browser_texts, join_room_page, state_of, unique
from tests.browser.stack import Server, start_agent
from tests.helpers import poll

LONG = 60_000  # ms: generous, the 2-core machine is shared
ROOM_SIZE = 10_000
WINDOW = 200  # static/chat/message-window.js WINDOW

# Sign `count` messages with the page's own device key and store them in its IndexedDB log in
# one transaction, as if this device had written them (and the server held them) before.
SEED = """async ({ user, room, count }) => {
  const { openDatabase, loadOrCreateDeviceKey } = await import('/static/chat/browser-log.js');
  const { createEnvelope } = await import('/static/chat/protocol/envelope.js');
  const db = await openDatabase(user);
  const key = await loadOrCreateDeviceKey(db);
  const start = Date.now() - count * 1000;
  const envs = await Promise.all(Array.from({ length: count }, (_, i) => createEnvelope(key, {
    room, author: user, seq: i + 1, lamport: i + 1, ts: start + i * 1000, text: `old ${i + 1}` })));
  const tx = db.transaction(['messages', 'meta'], 'readwrite');
  for (const env of envs) {
    tx.objectStore('messages').put({ room, device: env.device, seq: env.seq, env,
                                     origin: 'self', onServer: true });
  }
  tx.objectStore('meta').put(count + 1, `${room}:${key.device}:next_seq`);
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
}"""

# Send `count` messages through the composer, one after the other; for each, how long from
# the submit until its node is in the list, and what the list saw change meanwhile.
CHAT = """async ({ count }) => {
  const list = document.getElementById('messages');
  const text = document.getElementById('composer-text');
  const form = document.getElementById('composer');
  const rows = [];
  for (let i = 0; i < count; i++) {
    const row = { added: 0, removed: 0, touched: 0 };
    const body = `burst ${i}`;
    const seen = new MutationObserver((records) => {
      for (const r of records) {
        row.added += r.target === list ? r.addedNodes.length : 0;
        row.removed += r.target === list ? r.removedNodes.length : 0;
        const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
        // A delivery mark of an earlier message moving forward is that message's own update.
        if (node.closest('.delivery')) continue;
        const owner = node.closest('.message');
        if (owner && owner.querySelector('.text').textContent !== body) row.touched += 1;
      }
    });
    seen.observe(list, { childList: true, subtree: true, attributes: true, characterData: true });
    const shown = new Promise((resolve) => {
      const watch = new MutationObserver(() => {
        const last = list.lastElementChild;
        if (last && last.querySelector('.text').textContent === body) {
          watch.disconnect(); resolve();
        }
      });
      watch.observe(list, { childList: true });
    });
    const start = performance.now();
    text.value = body;
    form.requestSubmit();
    await shown;
    row.ms = performance.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 0));
    seen.takeRecords();
    seen.disconnect();
    rows.push(row);
  }
  return rows;
}"""


def open_seeded_room(page: Page, server: Server, count: int) -> tuple[str, str]:
    """Register a user, open a fresh room with `count` messages of theirs in the page's log,
    and return (user, room) once the page is ready again."""
    name = unique("reader")
    server.register(name)
    room = unique("long")
    join_room_page(page, server, name, room)
    page.evaluate(SEED, {"user": name, "room": room, "count": count})
    page.reload()
    page.wait_for_selector("#chat[data-ready]", timeout=LONG)
    return name, room


def message_count(page: Page) -> int:
    count: int = page.locator("#messages > .message").count()
    return count


def chat_burst(page: Page, count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.evaluate(CHAT, {"count": count})
    return rows


def test_render_work_per_message_does_not_grow_with_the_room(open_page: OpenPage,
                                                             server: Server) -> None:
    figures = {}
    for size in (10, ROOM_SIZE):
        page = open_page()
        open_seeded_room(page, server, size)
        expect(page.locator("#messages > .message").last).to_contain_text(f"old {size}")
        rows = chat_burst(page, 300)
        times = [r["ms"] for r in rows]
        figures[size] = (statistics.median(times[:100]), statistics.median(times[-100:]),
                         statistics.quantiles(times, n=100)[98])
        print(size, figures[size], message_count(page))
        # Each message: its own node added, at most one old node dropped, no other message
        # touched; the page holds a bounded window.
        assert all(r["added"] == 1 and r["removed"] <= 1 and r["touched"] == 0 for r in rows), [
            r for r in rows if r["added"] != 1 or r["removed"] > 1 or r["touched"]][:5]
        assert message_count(page) <= WINDOW
        assert browser_texts(page)[-1] == "burst 299"
        page.close()
    for size, (first, last, p99) in figures.items():
        print(f"room of {size}: submit -> shown, median of the first 100 {first:.1f} ms, "
              f"of the last 100 {last:.1f} ms, p99 {p99:.1f} ms")


def test_a_room_of_ten_thousand_messages_opens_chats_and_scrolls_back(
    open_page: OpenPage, server: Server, tmp_path: Path,
) -> None:
    page = open_page()
    name, room = open_seeded_room(page, server, ROOM_SIZE)
    # Only the newest window is shown, ending with the newest message.
    texts = browser_texts(page)
    assert texts == [f"old {i}" for i in range(ROOM_SIZE - len(texts) + 1, ROOM_SIZE + 1)]
    assert 50 <= len(texts) <= WINDOW

    bob = start_agent(server, unique("bob"), room, tmp_path / "bob")
    try:
        poll(lambda: state_of(page).get(bob.name) == "connected", timeout=60,
             message="the page linked to bob")
        # Bob's agent takes the whole log from the page by anti-entropy.
        poll(lambda: bob.texts()[-1:] == [f"old {ROOM_SIZE}"], timeout=90,
             message="bob holds the room's log")
        rows = chat_burst(page, 1)
        assert rows[0]["added"] == 1 and rows[0]["touched"] == 0
        poll(lambda: "burst 0" in bob.texts(), timeout=30, message="bob got the page's message")
        bob.send("hello from bob")
        expect(page.locator("#messages > .message").last).to_contain_text("hello from bob",
                                                                         timeout=LONG)
        assert browser_texts(page)[-2:] == ["burst 0", "hello from bob"]
        assert message_count(page) <= WINDOW
    finally:
        bob.stop()

    # Scrolling to the top reads the previous page in, in order, without duplicates.
    shown = message_count(page)
    page.eval_on_selector("#chat-scroll", "(s) => { s.scrollTop = 0; }")
    poll(lambda: message_count(page) > shown, timeout=30, message="an older page loaded")
    texts = browser_texts(page)
    assert len(texts) == len(set(texts))
    olds = [t for t in texts if t.startswith("old ")]
    first = int(olds[0].split()[1])
    assert olds == [f"old {i}" for i in range(first, ROOM_SIZE + 1)]
    assert first < ROOM_SIZE - shown + 2
