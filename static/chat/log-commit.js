// @ts-check
// How the browser peer's log reaches IndexedDB without standing in a message's way
// (docs/browser-peer.md, "When a message is durable"):
//
// - GroupCommit: every write the log makes (a message, a mark "the server holds it", the
//   cursor, a key) joins the next batch; one read-write transaction writes a whole batch, and
//   only one is in flight at a time, the next one starting when it commits. A burst of
//   messages therefore costs one transaction, not one each, and nothing on the message path
//   waits for IndexedDB. Writes that may wait (`putLater`: the marks that the server holds a
//   message, which only spare a re-upload after a reload) start no transaction of their own
//   for LATER_MS: they ride with the next message's, so a conversation costs one transaction
//   per message, not two or three.
// - Journal: this device's own messages from the moment they are signed until their batch has
//   committed, in localStorage (written synchronously, before the message is shown or sent).
//   A tab closed in between loses neither the message nor its seq: the next open of the room
//   replays the journal into IndexedDB.

import { timing } from "./timing.js";

// How long committed messages may stay listed in the journal before it is rewritten.
const JOURNAL_CLEANUP_MS = 1000;
// How long a write that may wait waits for a message's transaction to ride with.
export const LATER_MS = 250;

/** @typedef {{store: string, value: unknown, key?: IDBValidKey}} Put */
/** @typedef {{puts: Put[], urgent: boolean, done: Promise<void>, resolve: () => void,
 *   reject: (err: unknown) => void}} Batch */

/** @returns {Batch} */
function newBatch() {
  /** @type {() => void} */
  let resolve = () => {};
  /** @type {(err: unknown) => void} */
  let reject = () => {};
  const done = new Promise((res, rej) => { resolve = () => res(undefined); reject = rej; });
  // A failed batch is reported to whoever waits on it; nobody waiting is no unhandled error.
  done.catch(() => {});
  return { puts: [], urgent: false, done: /** @type {Promise<void>} */ (done), resolve, reject };
}

export class GroupCommit {
  /**
   * @param {IDBDatabase} db
   * @param {string[]} stores every store a batch may write
   * @param {{error: (...args: unknown[]) => void}} [log]
   */
  constructor(db, stores, log = console) {
    this.db = db;
    this.stores = stores;
    this.log = log;
    /** @type {Batch} the batch collecting writes now */
    this.next = newBatch();
    /** @type {Batch | null} the batch whose transaction is in flight */
    this.inFlight = null;
    /** @type {((count: number) => void)[]} told how many puts each committed batch held */
    this.onCommit = [];
    /** @type {ReturnType<typeof setTimeout> | null} the start of a batch of writes that wait */
    this.later = null;
    /** @type {((puts: Put[]) => void)[]} may add puts to a batch as its transaction starts
     * (a value that must describe everything written up to then, such as the log's heads) */
    this.beforeStart = [];
    /** @type {((err: unknown) => void)[]} told of a batch that failed, before the next starts */
    this.onFail = [];
  }

  /**
   * Add a put to the next batch; the promise settles when its transaction commits.
   * @param {string} store
   * @param {unknown} value
   * @param {IDBValidKey} [key] for a store without a key path
   * @returns {Promise<void>}
   */
  put(store, value, key) {
    const batch = this.add(store, value, key);
    batch.urgent = true;
    if (!this.inFlight) this.start();
    return batch.done;
  }

  /**
   * A put that may wait: it joins the next batch, which it does not start before LATER_MS
   * (a `put`, or `flushed()`, starts it sooner).
   * @param {string} store
   * @param {unknown} value
   * @param {IDBValidKey} [key]
   * @returns {Promise<void>}
   */
  putLater(store, value, key) {
    const batch = this.add(store, value, key);
    if (!this.inFlight) this.startLater();
    return batch.done;
  }

  /**
   * @param {string} store
   * @param {unknown} value
   * @param {IDBValidKey} [key]
   */
  add(store, value, key) {
    const batch = this.next;
    batch.puts.push(key === undefined ? { store, value } : { store, value, key });
    return batch;
  }

  startLater() {
    if (this.later !== null) return;
    this.later = setTimeout(() => {
      this.later = null;
      if (!this.inFlight && this.next.puts.length) this.start();
    }, LATER_MS);
  }

  /** Settles when every write added so far has committed (at once if none is pending);
   * writes that may wait are started now. */
  flushed() {
    const batch = this.next;
    if (batch.puts.length) {
      batch.urgent = true;
      if (!this.inFlight) this.start();
      return batch.done;
    }
    return this.inFlight ? this.inFlight.done : Promise.resolve();
  }

  start() {
    if (this.later !== null) {
      clearTimeout(this.later);
      this.later = null;
    }
    const batch = this.next;
    this.next = newBatch();
    this.inFlight = batch;
    const t0 = performance.now();
    let tx;
    try {
      for (const hook of this.beforeStart) hook(batch.puts);
      tx = this.db.transaction(this.stores, "readwrite");
      for (const put of batch.puts) {
        const store = tx.objectStore(put.store);
        if (put.key === undefined) store.put(put.value);
        else store.put(put.value, put.key);
      }
    } catch (err) {
      this.finish(batch, err);
      return;
    }
    tx.oncomplete = () => {
      timing.measure("idb: one group commit (readwrite transaction)", t0);
      for (const listener of this.onCommit) listener(batch.puts.length);
      this.finish(batch, null);
    };
    tx.onabort = () => this.finish(batch, tx.error || new Error("IndexedDB transaction aborted"));
  }

  /**
   * @param {Batch} batch
   * @param {unknown} err
   */
  finish(batch, err) {
    this.inFlight = null;
    if (err) {
      this.log.error("writing the log to IndexedDB failed", err);
      for (const listener of this.onFail) listener(err);
      batch.reject(err);
    } else {
      batch.resolve();
    }
    if (this.next.urgent) this.start();
    else if (this.next.puts.length) this.startLater();
  }
}

export class Journal {
  /**
   * This device's authored, not yet committed messages of one room, under `name`.
   * @param {string} name
   */
  constructor(name) {
    this.name = name;
    /** @type {Map<string, Record<string, unknown>>} id -> envelope object */
    this.entries = new Map();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.cleanup = null;
  }

  /** What an earlier page of this room left uncommitted (envelope objects, as stored). */
  read() {
    try {
      const raw = localStorage.getItem(this.name);
      const list = raw ? JSON.parse(raw) : [];
      return Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  }

  /**
   * @param {string} id
   * @param {Record<string, unknown>} env
   */
  add(id, env) {
    this.entries.set(id, env);
    this.write();
  }

  /**
   * Committed: they leave the journal. Written a little later (or with the next message):
   * an entry IndexedDB already holds is skipped when the journal is replayed, so a late
   * cleanup costs nothing, and it saves a localStorage write per message in a conversation.
   * @param {Iterable<string>} ids
   */
  remove(ids) {
    let changed = false;
    for (const id of ids) changed = this.entries.delete(id) || changed;
    if (changed && this.cleanup === null) {
      this.cleanup = setTimeout(() => this.write(), JOURNAL_CLEANUP_MS);
    }
  }

  clear() {
    this.entries.clear();
    this.write();
  }

  write() {
    if (this.cleanup !== null) {
      clearTimeout(this.cleanup);
      this.cleanup = null;
    }
    try {
      if (this.entries.size) localStorage.setItem(this.name, JSON.stringify([...this.entries.values()]));
      else localStorage.removeItem(this.name);
    } catch {
      // localStorage full or refused: the message is still committed by the next batch; only
      // a tab closed before that would lose it.
    }
  }
}
