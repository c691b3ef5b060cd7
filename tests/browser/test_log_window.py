"""The browser log in a long room, in real Chromium: a page opening a room holds only its
newest messages, the outbox and what is not committed yet, and reads older pages and what a
peer lacks from IndexedDB's indexes; what it holds per device survives a reload in one value,
and a database of the first version is brought up to date without losing its outbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import OpenPage, unique
from tests.browser.stack import Server

LOG_WINDOW = 400  # static/chat/browser-log.js LOG_WINDOW
MINE, THEIRS = 1500, 300

# Helpers every script below starts with: sign `count` messages of a key, and store records
# straight into IndexedDB (as a page of this device would have, or an older version of it).
HELPERS = """
const { BrowserLog, loadOrCreateDeviceKey, openDatabase, LOG_WINDOW } =
  await import('/static/chat/browser-log.js');
const { createEnvelope, envelopeId, compareOrder } =
  await import('/static/chat/protocol/envelope.js');
const sign = (key, room, from, count, lamportOf, text) => Promise.all(
  Array.from({ length: count }, (_, i) => createEnvelope(key, {
    room, author: 'someone', seq: from + i, lamport: lamportOf(from + i), ts: 1700000000000,
    text: text(from + i) })));
const store = async (db, room, envs, onServer) => {
  const tx = db.transaction(['messages'], 'readwrite');
  for (const env of envs) {
    tx.objectStore('messages').put({ room, device: env.device, seq: env.seq, env,
                                     origin: 'self', onServer });
  }
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
};
const otherKey = async (name) => {
  const db = await openDatabase(name);
  const key = await loadOrCreateDeviceKey(db);
  db.close();
  return key;
};
// Records held in memory that nothing needs there: not among the newest, not in the outbox,
// not waiting for their commit.
const strays = (log) => {
  const recent = new Set(log.recent.map((r) => envelopeId(r.env)));
  return [...log.byId.keys()].filter((id) => !recent.has(id) && !log.pending.has(id)
                                            && !log.unsaved.has(id)).length;
};
// Every envelope of the log, newest page first, walked back to the start.
const walk = async (log, size) => {
  const ids = [];
  let before = null;
  let pages = 0;
  for (;;) {
    const { envs, more } = await log.page(before, size);
    ids.unshift(...envs.map(envelopeId));
    pages += 1;
    if (!more || !envs.length) return { ids, pages };
    before = envs[0];
  }
};
"""

# A room of MINE messages of this device and THEIRS of another, interleaved, stored by an
# earlier page (no heads written), then opened.
OPEN_LONG = "async ({ user, other, room, mine, theirs }) => {" + HELPERS + """
  const db = await openDatabase(user);
  const key = await loadOrCreateDeviceKey(db);
  const them = await otherKey(other);
  const ours = await sign(key, room, 1, mine, (s) => 2 * s, (s) => `mine ${s}`);
  const theirsEnvs = await sign(them, room, 1, theirs, (s) => 5 * s + 1, (s) => `theirs ${s}`);
  await store(db, room, [...ours, ...theirsEnvs], true);
  const all = [...ours, ...theirsEnvs].sort(compareOrder).map(envelopeId);

  const log = new BrowserLog(db, room);
  await log.load(key.device);
  const opened = { recent: log.recent.length, inMemory: log.byId.size, whole: log.whole,
                   headsRebuilt: log.headsRebuilt, vector: Object.fromEntries(log.vector()),
                   lamport: log.maxLamport(), nextSeq: log.nextSeq };
  const walked = await walk(log, 150);
  const missing = (await log.missingFor(new Map([[key.device, mine - 10]]))).map(envelopeId);
  const everything = (await log.missingFor(new Map())).length;
  // A peer lacking everything is sent pages of the log, one device's each, never all at once.
  const pages = [];
  for await (const p of log.missingPages(new Map(), 700)) {
    pages.push([p.length, new Set(p.map((e) => e.device)).size, p[0].seq, p.at(-1).seq]);
  }
  await log.flushed();
  db.close();
  return { opened, walked, all, missing, everything, pages, me: key.device,
           them: them.device };
}"""

# The same room, written in: enough of this device's messages to let the oldest held go, one
# old message of the other device coming late, duplicates and a conflict of messages held in
# IndexedDB only; then the room opened again by another log, as a reload would.
WRITE_AND_REOPEN = "async ({ user, other, room, mine, theirs, written }) => {" + HELPERS + """
  const db = await openDatabase(user);
  const key = await loadOrCreateDeviceKey(db);
  const them = await otherKey(other);
  const log = new BrowserLog(db, room);
  await log.load(key.device);
  const rebuiltAgain = log.headsRebuilt;
  // Each acknowledged by the server as it is written, as when the server is up.
  for (let i = 0; i < written; i++) {
    const env = await log.author(key, user, `new ${i}`, Date.now());
    log.markOnServer({ [envelopeId(env)]: i + 1 });
  }
  const afterWriting = { recent: log.recent.length, inMemory: log.byId.size, whole: log.whole,
                         strays: strays(log) };

  // A message the other device wrote long ago, that reached this one only now.
  const [late] = await sign(them, room, theirs + 1, 1, () => 3, () => 'late');
  const lateId = envelopeId(late);
  const fresh = (await log.addMany([late], `peer:${them.device}`)).map(envelopeId);
  const lateHeld = { inRecent: log.recent.some((r) => envelopeId(r.env) === lateId),
                     outbox: log.outboxCount(), onServer: log.onServer(lateId) };
  await log.flushed();
  const walked = await walk(log, 200);
  log.markOnServer({ [lateId]: 7 });
  const lateAfterMark = { inMemory: log.byId.has(lateId), onServer: log.onServer(lateId),
                          outbox: log.outboxCount() };

  // Held in IndexedDB only: the same envelope again is a duplicate, a different one under
  // the same id a conflict (the first one kept).
  const [first] = await sign(key, room, 1, 1, () => 2, () => 'mine 1');
  const [forged] = await sign(key, room, 2, 1, () => 4, () => 'not what seq 2 said');
  const again = (await log.addMany([first, forged], 'server')).length;
  for (let i = 0; i < 100 && log.conflicts === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const conflicts = log.conflicts;
  await log.flushed();

  const reopened = new BrowserLog(db, room);
  await reopened.load(key.device);
  const result = {
    rebuiltAgain, afterWriting, fresh, lateId, lateHeld, walked, lateAfterMark, again,
    conflicts,
    vector: Object.fromEntries(log.vector()),
    reopened: { headsRebuilt: reopened.headsRebuilt, vector: Object.fromEntries(reopened.vector()),
                recent: reopened.recent.length, newest: reopened.recent.at(-1).env.text,
                nextSeq: reopened.nextSeq, lamport: reopened.maxLamport(),
                outbox: reopened.outboxCount(), onServer: reopened.onServer(lateId) },
    me: key.device, them: them.device,
  };
  db.close();
  return result;
}"""

# A database of version 1 (no `order` or `outbox` index, no heads), with two messages the
# server has not acknowledged, opened by this version.
UPGRADE = "async ({ user, room }) => {" + HELPERS + """
  const request = indexedDB.open(`gibberish:${user}`, 1);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore('device');
    const messages = db.createObjectStore('messages', { keyPath: ['room', 'device', 'seq'] });
    messages.createIndex('room', 'room');
    db.createObjectStore('meta');
    db.createObjectStore('keys', { keyPath: 'device' });
  };
  const old = await new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const key = await loadOrCreateDeviceKey(old);
  const envs = await sign(key, room, 1, 5, (s) => s, (s) => `old ${s}`);
  await store(old, room, envs.slice(0, 3), true);
  await store(old, room, envs.slice(3), false);
  old.close();

  const db = await openDatabase(user);
  const log = new BrowserLog(db, room);
  await log.load(key.device);
  const names = db.transaction('messages').objectStore('messages').indexNames;
  const indexed = await new Promise((resolve, reject) => {
    const request = db.transaction('messages').objectStore('messages').index('outbox')
      .getAll(IDBKeyRange.only([room, 1]));
    request.onsuccess = () => resolve(request.result.map((r) => r.env.text));
    request.onerror = () => reject(request.error);
  });
  const result = { version: db.version, indexes: [...names], indexed,
                   outbox: log.outbox(Infinity, Date.now() + 60000).map((e) => e.text),
                   vector: Object.fromEntries(log.vector()), nextSeq: log.nextSeq,
                   texts: (await log.page(null, 10)).envs.map((e) => e.text), me: key.device };
  db.close();
  return result;
}"""


@pytest.fixture
def page(open_page: OpenPage, server: Server) -> Iterator[Page]:
    """A page of the server's origin (a secure context, so WebCrypto is there)."""
    opened = open_page()
    opened.goto(server.url + "/")
    yield opened


def run(page: Page, script: str, **arg: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(script, arg)
    return result


def test_a_long_room_opens_with_its_newest_messages_and_reads_the_rest_from_indexeddb(
    page: Page,
) -> None:
    user, room = unique("reader"), unique("long")
    seen = run(page, OPEN_LONG, user=user, other=unique("other"), room=room, mine=MINE,
               theirs=THEIRS)
    me, them, opened = seen["me"], seen["them"], seen["opened"]
    # In memory: the newest window only (nothing is in the outbox), not the room.
    assert opened["recent"] == LOG_WINDOW
    assert opened["inMemory"] == LOG_WINDOW
    assert opened["whole"] is False
    # Written by an earlier page without heads: rebuilt from the room's keys, to be stored.
    assert opened["headsRebuilt"] is True
    assert opened["vector"] == {me: MINE, them: THEIRS}
    assert opened["lamport"] == 2 * MINE
    assert opened["nextSeq"] == MINE + 1
    # Scrolling back reads every message once, in display order, older pages from IndexedDB.
    assert seen["walked"]["ids"] == seen["all"]
    assert seen["walked"]["pages"] == -(-(MINE + THEIRS) // 150)
    # A peer's vector asks for what it lacks, by (device, seq).
    first, second = sorted([me, them])
    lacking = {me: [f"{me}:{s}" for s in range(MINE - 9, MINE + 1)],
               them: [f"{them}:{s}" for s in range(1, THEIRS + 1)]}
    assert seen["missing"] == lacking[first] + lacking[second]
    assert seen["everything"] == MINE + THEIRS
    pages = {me: [[700, 1, 1, 700], [700, 1, 701, 1400], [100, 1, 1401, 1500]],
             them: [[300, 1, 1, 300]]}
    assert seen["pages"] == pages[first] + pages[second]


def test_writing_in_a_long_room_keeps_memory_bounded_and_the_heads_survive_a_reload(
    page: Page,
) -> None:
    user, other, room = unique("writer"), unique("other"), unique("long")
    run(page, OPEN_LONG, user=user, other=other, room=room, mine=MINE, theirs=THEIRS)
    written = 2 * LOG_WINDOW + 50
    seen = run(page, WRITE_AND_REOPEN, user=user, other=other, room=room, mine=MINE,
               theirs=THEIRS, written=written)
    me, them = seen["me"], seen["them"]
    # The heads the first open rebuilt were stored: read back, not rebuilt again.
    assert seen["rebuiltAgain"] is False
    after = seen["afterWriting"]
    assert after["whole"] is False
    assert LOG_WINDOW <= after["recent"] <= 2 * LOG_WINDOW
    # The newest, and the few written meanwhile that are not committed yet.
    assert after["inMemory"] <= 2 * LOG_WINDOW + 100, "memory grows with what is written"
    assert after["strays"] == 0

    # The late message is held, in the outbox, not among the newest, and found in its place.
    late = seen["lateId"]
    assert seen["fresh"] == [late]
    assert seen["lateHeld"] == {"inRecent": False, "outbox": 1, "onServer": False}
    ids = seen["walked"]["ids"]
    assert len(ids) == len(set(ids)) == MINE + THEIRS + written + 1
    assert ids.index(late) == 1, "lamport 3 comes after mine 1 (lamport 2), before mine 2"
    # Once the server holds it, it leaves the outbox and memory.
    assert seen["lateAfterMark"] == {"inMemory": False, "onServer": True, "outbox": 0}

    # Held in IndexedDB only: neither a duplicate nor a conflict is held again.
    assert seen["again"] == 0
    assert seen["conflicts"] == 1

    reopened = seen["reopened"]
    assert reopened["headsRebuilt"] is False, "the heads were read back, not rebuilt"
    assert reopened["vector"] == seen["vector"] == {me: MINE + written, them: THEIRS + 1}
    assert reopened["recent"] == LOG_WINDOW
    assert reopened["newest"] == f"new {written - 1}"
    assert reopened["nextSeq"] == MINE + written + 1
    assert reopened["lamport"] == 2 * MINE + written
    assert reopened["outbox"] == 0
    assert reopened["onServer"] is True


def test_a_database_of_the_first_version_keeps_its_outbox_when_brought_up_to_date(
    page: Page,
) -> None:
    seen = run(page, UPGRADE, user=unique("upgrade"), room=unique("old"))
    assert seen["version"] == 2
    assert {"room", "order", "outbox"} <= set(seen["indexes"])
    assert seen["indexed"] == ["old 4", "old 5"], "the upgrade put them in the outbox index"
    assert seen["outbox"] == ["old 4", "old 5"]
    assert seen["vector"] == {seen["me"]: 5}
    assert seen["nextSeq"] == 6
    assert seen["texts"] == [f"old {i}" for i in range(1, 6)]


# A batch of the group commit that fails (its transaction held open until another batch is
# queued behind it, then aborted), then that one commits, and nothing after: the heads stored
# with the second claim the first's message, so they say they are suspect and the next open
# rebuilds them from the room's keys, after the journal put the message back.
FAILED_BATCH = "async ({ user, room }) => {" + HELPERS + """
  const db = await openDatabase(user);
  const key = await loadOrCreateDeviceKey(db);
  const log = new BrowserLog(db, room);
  await log.load(key.device);
  await log.author(key, user, 'kept', Date.now());
  await log.flushed();
  let victim = true;
  let abortNow = false;
  log.commit.db = new Proxy(db, { get(target, name) {
    const value = Reflect.get(target, name);
    if (name !== 'transaction') return typeof value === 'function' ? value.bind(target) : value;
    return (...args) => {
      const tx = target.transaction(...args);
      if (victim && args[1] === 'readwrite') {
        victim = false;
        const meta = tx.objectStore('meta');
        const spin = () => {
          if (abortNow) tx.abort();
          else meta.get('nothing').onsuccess = spin;
        };
        spin();
      }
      return tx;
    };
  } });
  await log.author(key, user, 'lost by its batch', Date.now());
  await log.author(key, user, 'after', Date.now());
  const queued = log.commit.inFlight !== null && log.commit.next.puts.length > 0;
  // A peer's pull meanwhile is sent what is not committed too (its read waits for the batch).
  const pulling = log.missingFor(new Map());
  abortNow = true;
  const pulled = (await pulling).map((e) => e.text);
  await log.flushed();
  const failed = log.headsSuspect;
  const stored = await new Promise((resolve) => {
    const request = db.transaction('meta').objectStore('meta').get(`${room}:heads`);
    request.onsuccess = () => resolve(request.result);
  });
  const reopened = new BrowserLog(db, room);
  await reopened.load(key.device);
  const result = { queued, pulled, failed, suspect: Boolean(stored && stored.suspect),
                   rebuilt: reopened.headsRebuilt, vector: Object.fromEntries(reopened.vector()),
                   texts: (await reopened.page(null, 10)).envs.map((e) => e.text),
                   me: key.device };
  await reopened.flushed();
  const again = new BrowserLog(db, room);
  await again.load(key.device);
  result.rebuiltAgain = again.headsRebuilt;
  db.close();
  return result;
}"""

# A room small enough to open whole, written in until it is not: what leaves the newest
# messages leaves memory too.
GROWS_PAST_THE_WINDOW = "async ({ user, room, written }) => {" + HELPERS + """
  const db = await openDatabase(user);
  const key = await loadOrCreateDeviceKey(db);
  const log = new BrowserLog(db, room);
  await log.load(key.device);
  const openedWhole = log.whole;
  for (let i = 0; i < written; i++) {
    const env = await log.author(key, user, `new ${i}`, Date.now());
    log.markOnServer({ [envelopeId(env)]: i + 1 });
    // Committed as they go, as in a conversation (not all of them still waiting at the end).
    if (i % 20 === 19) await log.flushed();
  }
  await log.flushed();
  const result = { openedWhole, whole: log.whole, recent: log.recent.length,
                   inMemory: log.byId.size, strays: strays(log),
                   walked: (await walk(log, 200)).ids.length };
  db.close();
  return result;
}"""


def test_heads_stored_after_a_failed_batch_are_rebuilt_on_the_next_open(page: Page) -> None:
    seen = run(page, FAILED_BATCH, user=unique("failing"), room=unique("room"))
    assert seen["queued"] is True, "the second batch waited behind the one that failed"
    assert seen["pulled"] == ["kept", "lost by its batch", "after"]
    assert seen["failed"] is True, "the aborted batch was noticed"
    assert seen["suspect"] is True, "the heads written after it say they are suspect"
    assert seen["rebuilt"] is True
    # The journal put the lost message back; every seq is held, none twice.
    assert seen["vector"] == {seen["me"]: 3}
    assert seen["texts"] == ["kept", "lost by its batch", "after"]
    assert seen["rebuiltAgain"] is False, "the rebuilt heads were stored"


def test_a_room_opened_whole_lets_its_oldest_go_once_it_outgrows_the_window(page: Page) -> None:
    written = 2 * LOG_WINDOW + 100
    seen = run(page, GROWS_PAST_THE_WINDOW, user=unique("grower"), room=unique("room"),
               written=written)
    assert seen["openedWhole"] is True and seen["whole"] is False
    assert LOG_WINDOW <= seen["recent"] <= 2 * LOG_WINDOW
    assert seen["strays"] == 0, "messages let go from the newest stayed in memory"
    assert seen["inMemory"] == seen["recent"]
    assert seen["walked"] == written
