"""The browser peer's group commit in real Chromium (static/chat/log-commit.js): a write that
may wait (the mark "the server holds it") starts no IndexedDB transaction of its own; it rides
with the next message's, or is written alone a little later, or at once when someone waits
for the log (`flushed()`); and the marks a page gets from the server do reach its log."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

from tests.browser.conftest import OpenPage, join_room_page, send_from_page, unique
from tests.browser.stack import Server
from tests.browser.test_browser_log import STORED
from tests.helpers import poll

WAIT_S = 30

# A GroupCommit on a fresh database of its own, every readwrite transaction it starts
# counted, with the puts each carried. `globalThis.gc` is the commit, `globalThis.started` the
# list of transactions (each a list of the values put).
SETUP = """async (name) => {
  const { GroupCommit } = await import('/static/chat/log-commit.js');
  const db = await new Promise((resolve, reject) => {
    const open = indexedDB.open(name, 1);
    open.onupgradeneeded = () => open.result.createObjectStore('kv');
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  globalThis.started = [];
  const transaction = db.transaction.bind(db);
  db.transaction = (stores, mode) => {
    const tx = transaction(stores, mode);
    if (mode !== 'readwrite') return tx;
    const puts = [];
    globalThis.started.push(puts);
    const store = tx.objectStore.bind(tx);
    tx.objectStore = (n) => {
      const s = store(n);
      if (!s.counted) {
        const put = s.put.bind(s);
        s.put = (value, key) => { puts.push(value); return put(value, key); };
        s.counted = true;
      }
      return s;
    };
    return tx;
  };
  globalThis.gc = new GroupCommit(db, ['kv']);
  globalThis.db = db;
}"""

READ = """async (key) => new Promise((resolve, reject) => {
  const r = globalThis.db.transaction('kv', 'readonly').objectStore('kv').get(key);
  r.onsuccess = () => resolve(r.result ?? null);
  r.onerror = () => reject(r.error);
})"""


def started(page: Page) -> list[list[Any]]:
    rows: list[list[Any]] = page.evaluate("() => globalThis.started")
    return rows


def fresh_page(open_page: OpenPage, server: Server) -> Page:
    page = open_page()
    page.goto(f"{server.url}/")
    page.evaluate(SETUP, unique("commit"))
    return page


def test_a_write_that_may_wait_rides_with_the_next_message(
    open_page: OpenPage, server: Server,
) -> None:
    page = fresh_page(open_page, server)
    # Both in one call: the later write is asked before any timer could run.
    page.evaluate("async () => { globalThis.gc.putLater('kv', 'mark', 'm');"
                  " globalThis.marked = globalThis.started.length;"
                  " await globalThis.gc.put('kv', 'message', 'x'); }")
    assert page.evaluate("() => globalThis.marked") == 0, "the mark started a transaction"
    assert started(page) == [["mark", "message"]]
    assert page.evaluate(READ, "m") == "mark"


def test_a_write_that_may_wait_is_written_alone_soon(
    open_page: OpenPage, server: Server,
) -> None:
    page = fresh_page(open_page, server)
    # Counted in the same call: a second call may come after the timer (250 ms) on a busy
    # machine, and find the write rightly begun.
    begun = page.evaluate("() => { globalThis.gc.putLater('kv', 'late', 'k');"
                          " return globalThis.started.length; }")
    assert begun == 0, "the waiting write started a transaction at once"
    poll(lambda: page.evaluate(READ, "k") == "late", timeout=WAIT_S,
         message="the waiting write committed on its own")
    assert started(page) == [["late"]]


def test_flushed_writes_what_waits_at_once(open_page: OpenPage, server: Server) -> None:
    page = fresh_page(open_page, server)
    # The transaction is begun within the call itself, not by the timer.
    begun = page.evaluate("async () => { globalThis.gc.putLater('kv', 'now', 'n');"
                          " const done = globalThis.gc.flushed();"
                          " const begun = globalThis.started.length; await done;"
                          " return begun; }")
    assert begun == 1, "flushed() left the waiting write to its timer"
    assert started(page) == [["now"]]
    assert page.evaluate(READ, "n") == "now"


def test_a_write_that_may_wait_behind_a_transaction_is_not_hurried(
    open_page: OpenPage, server: Server,
) -> None:
    page = fresh_page(open_page, server)
    # A message's transaction in flight; a mark asked meanwhile does not start the next one
    # when it commits, a message asked meanwhile does, carrying the mark. One call: nothing
    # here waits long enough for the mark's own timer.
    shapes = page.evaluate("""async () => {
      const first = globalThis.gc.put('kv', 'one', 1);
      globalThis.gc.putLater('kv', 'mark', 'm');
      await first;
      const afterFirst = globalThis.started.length;
      const second = globalThis.gc.put('kv', 'two', 2);
      globalThis.gc.put('kv', 'three', 3);
      await second;
      await globalThis.gc.flushed();
      return afterFirst;
    }""")
    assert shapes == 1, "the mark alone started a transaction when the first committed"
    assert started(page) == [["one"], ["mark", "two"], ["three"]]


def test_the_servers_marks_reach_the_log(open_page: OpenPage, server: Server) -> None:
    user, room = unique("marks"), unique("room")
    server.register(user)
    page = open_page()
    join_room_page(page, server, user, room)
    for text in ("one", "two"):
        send_from_page(page, text)
    poll(lambda: [(text, held) for _, text, held in
                  page.evaluate(STORED, {"user": user, "room": room})]
         == [("one", True), ("two", True)], timeout=WAIT_S,
         message="both messages marked in IndexedDB as held by the server")
