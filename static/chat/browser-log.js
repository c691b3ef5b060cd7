// @ts-check
// The browser peer's local storage, in IndexedDB (one database per user of this browser):
// the device's Ed25519 key (non-extractable), the room's log with its outbox and server
// cursor, and the device keys learnt. The JavaScript twin of peer_agent/log.py.

import {
  compareOrder,
  createEnvelope,
  envelopeFromObject,
  envelopeId,
  envelopeToObject,
  sameEnvelope,
} from "./protocol/envelope.js";
import { b64encode, deviceIdFor, keyMatchesDevice } from "./protocol/keys.js";
import { MAX_USERNAME_CHARS } from "./protocol/limits.js";
import { isNormalizedName } from "./protocol/names.js";
import { GroupCommit, Journal } from "./log-commit.js";
import { timing } from "./timing.js";

/** @typedef {import("./protocol/envelope.js").Envelope} Envelope */
// How long another device's message waits in the outbox before this page uploads it itself
// (peer_agent/outbox.py OTHERS_GRACE): its author uploads it too, and the server's `stored`
// notice then takes it out of the outbox, so a room does not upload each message once per
// member.
export const OTHERS_GRACE_MS = 1500;
/** @typedef {import("./protocol/envelope.js").OrderKey} OrderKey */
/** @typedef {import("./protocol/keys.js").DeviceKey} DeviceKey */
/**
 * One stored message: the envelope, where it came from ("self", "peer:<device>" or
 * "server") and whether the server holds it; room, device and seq are its IndexedDB key.
 * @typedef {{room: string, device: string, seq: number, env: Envelope, origin: string,
 *   onServer: boolean}} LogRecord
 */
/**
 * A device key learnt, and from whom ("self", "server" or a peer).
 * @typedef {{device: string, user: string, public_key: string, source: string}} KnownKey
 */
/**
 * One device's part of the log: the seqs held, and the highest with none missing below.
 * @typedef {{seqs: Set<number>, records: Map<number, LogRecord>, contiguous: number,
 *   highest: number}} Head
 */

const DB_VERSION = 1;
// Sources a key can come from; the server's word (or this device's own) replaces a peer's.
const AUTHORITATIVE = new Set(["self", "server"]);

/**
 * Index of the first record after the order key `key` in `ordered` (binary search).
 * @param {LogRecord[]} ordered
 * @param {OrderKey} key
 */
function after(ordered, key) {
  let low = 0;
  let high = ordered.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (compareOrder(ordered[mid].env, key) > 0) high = mid;
    else low = mid + 1;
  }
  return low;
}

/**
 * Index of the first record at or after the order key `key` in `ordered`.
 * @param {LogRecord[]} ordered
 * @param {OrderKey} key
 */
function atOrAfter(ordered, key) {
  let low = 0;
  let high = ordered.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (compareOrder(ordered[mid].env, key) >= 0) high = mid;
    else low = mid + 1;
  }
  return low;
}

/**
 * @template T
 * @param {IDBRequest<T>} request
 * @returns {Promise<T>}
 */
function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * @param {IDBTransaction} tx
 * @returns {Promise<void>}
 */
function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
  });
}

/**
 * Open (and on first use create) the IndexedDB database of `user` in this browser.
 * @param {string} user
 */
export function openDatabase(user) {
  const request = indexedDB.open(`gibberish:${user}`, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore("device");
    const messages = db.createObjectStore("messages", { keyPath: ["room", "device", "seq"] });
    messages.createIndex("room", "room");
    db.createObjectStore("meta");
    db.createObjectStore("keys", { keyPath: "device" });
  };
  return done(request);
}

/**
 * This browser's device key for the database's user, made on first use: an Ed25519 key pair
 * whose private half WebCrypto never lets out (non-extractable), kept in IndexedDB.
 * Returns {privateKey, publicKey: base64url, device}.
 * @param {IDBDatabase} db
 * @returns {Promise<DeviceKey>}
 */
export async function loadOrCreateDeviceKey(db) {
  const tx = db.transaction("device", "readonly");
  const held = await done(tx.objectStore("device").get("key"));
  if (held) return held;
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error("this page needs a secure context (HTTPS, or http://127.0.0.1) for WebCrypto");
  }
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const key = {
    privateKey: pair.privateKey,
    publicKey: b64encode(raw),
    device: await deviceIdFor(raw),
  };
  const write = db.transaction("device", "readwrite");
  // add(), not put(): of two tabs making a key at once, the first one stored wins.
  write.objectStore("device").add(key, "key");
  try {
    await committed(write);
    return key;
  } catch {
    const again = db.transaction("device", "readonly");
    return done(again.objectStore("device").get("key"));
  }
}

/**
 * The room's log: every verified envelope held, in memory and in IndexedDB, with the outbox
 * (what the server has not acknowledged) and per-device heads for the version vector.
 * Call `load(device)` once before anything else.
 *
 * Reads are answered from memory. Writes change memory at once and reach IndexedDB by group
 * commit (log-commit.js); `flushed()` says when everything written so far is committed, and
 * this device's own messages are journalled in localStorage until then (docs/browser-peer.md,
 * "When a message is durable").
 */
export class BrowserLog {
  /**
   * @param {IDBDatabase} db
   * @param {string} room
   */
  constructor(db, room) {
    this.db = db;
    this.room = room;
    /** @type {Map<string, LogRecord>} id -> record */
    this.byId = new Map();
    /** @type {LogRecord[]} records in display order */
    this.ordered = [];
    /** @type {Map<string, LogRecord>} id -> record the server has not acknowledged (the outbox) */
    this.pending = new Map();
    /** @type {Map<string, Head>} device -> head */
    this.heads = new Map();
    /** @type {Map<string, KnownKey>} device -> key */
    this.keys = new Map();
    /** @type {Map<string, number>} id -> cursor, for ids the server holds that we lack */
    this.serverKnown = new Map();
    this.cursor = 0;
    this.conflicts = 0;
    this.commit = new GroupCommit(db, ["messages", "meta", "keys"]);
    this.journal = new Journal(`${db.name}:journal:${room}`);
    /** @type {Set<string>} ids of records not committed yet: not uploaded, not acknowledged */
    this.unsaved = new Set();
    /** The next seq this device writes with in this room (kept in memory, loaded once). */
    this.nextSeq = 1;
    /** @type {string | null} this device, as load() was told */
    this.device = null;
    /** @type {Map<string, number>} id -> when another device's message came (outbox grace) */
    this.arrived = new Map();
    /** @type {Promise<unknown>} authoring, one message at a time (seq and lamport in order) */
    this.authoring = Promise.resolve();
  }

  /**
   * Read the room's log, the keys and the counters; then replay what an earlier page of this
   * device authored but could not commit (the journal) into IndexedDB.
   * @param {string | null} [device] this device, whose next seq is read
   */
  async load(device = null) {
    const tx = this.db.transaction(["messages", "meta", "keys"], "readonly");
    const rows = await done(tx.objectStore("messages").index("room").getAll(this.room));
    const keys = await done(tx.objectStore("keys").getAll());
    this.cursor = (await done(tx.objectStore("meta").get(`${this.room}:cursor`))) || 0;
    const counted = device
      ? (await done(tx.objectStore("meta").get(this.seqKey(device)))) || 1 : 1;
    // Stored by device and seq: put in display order once, so that each is appended (placed
    // one by one, the messages of a room's second author each moved the whole list).
    rows.sort((a, b) => compareOrder(a.env, b.env));
    for (const row of rows) this.remember(row);
    for (const k of keys) this.keys.set(k.device, k);
    this.device = device;
    if (!device) return;
    const replayed = this.journalled(device);
    if (replayed.length) {
      const write = this.db.transaction(["messages", "meta"], "readwrite");
      for (const r of replayed) write.objectStore("messages").put(r);
      const highest = Math.max(...replayed.map((r) => r.seq));
      write.objectStore("meta").put(Math.max(counted, highest + 1), this.seqKey(device));
      await committed(write);
      for (const r of replayed) this.remember(r);
    }
    this.journal.clear();
    const head = this.heads.get(device);
    this.nextSeq = Math.max(counted, (head ? head.highest : 0) + 1);
  }

  /**
   * The journal's messages of `device` that the log does not hold, as records to store.
   * @param {string} device
   * @returns {LogRecord[]}
   */
  journalled(device) {
    /** @type {LogRecord[]} */
    const out = [];
    for (const raw of this.journal.read()) {
      let env;
      try {
        env = envelopeFromObject(raw);
      } catch {
        continue;
      }
      if (env.room !== this.room || env.device !== device || this.byId.has(envelopeId(env))) continue;
      out.push({ room: this.room, device, seq: env.seq, env, origin: "self", onServer: false });
    }
    return out;
  }

  /** @param {string} device */
  seqKey(device) {
    return `${this.room}:${device}:next_seq`;
  }

  /**
   * Queue a record's write; it is uploaded or acknowledged only once committed.
   * @param {LogRecord} record
   * @param {string} id
   */
  save(record, id) {
    this.unsaved.add(id);
    return this.commit.put("messages", record).then(() => { this.unsaved.delete(id); });
  }

  /** Settles when every write made so far is in IndexedDB. */
  flushed() {
    return this.commit.flushed();
  }

  /** @param {LogRecord} record */
  remember(record) {
    const id = envelopeId(record.env);
    this.byId.set(id, record);
    // Messages nearly always arrive in order: append, else binary search for the place.
    const last = this.ordered[this.ordered.length - 1];
    if (!last || compareOrder(last.env, record.env) < 0) this.ordered.push(record);
    else this.ordered.splice(after(this.ordered, record.env), 0, record);
    let head = this.heads.get(record.env.device);
    if (!head) {
      head = { seqs: new Set(), records: new Map(), contiguous: 0, highest: 0 };
      this.heads.set(record.env.device, head);
    }
    head.seqs.add(record.env.seq);
    head.records.set(record.env.seq, record);
    if (!record.onServer) this.pending.set(id, record);
    head.highest = Math.max(head.highest, record.env.seq);
    while (head.seqs.has(head.contiguous + 1)) head.contiguous++;
  }

  /** @param {string} id */
  get(id) {
    const record = this.byId.get(id);
    return record ? record.env : null;
  }

  maxLamport() {
    return this.ordered.length ? this.ordered[this.ordered.length - 1].env.lamport : 0;
  }

  /**
   * Hold verified envelopes; returns the new ones at once, held in memory, their write to
   * IndexedDB queued (`flushed()` says when it is done). A duplicate is skipped; a different
   * envelope under a held id is a conflict: the first one is kept.
   * `origin` is "self", "peer:<device>" or "server".
   * @param {Envelope[]} envs
   * @param {string} origin
   * @returns {Promise<Envelope[]>}
   */
  async addMany(envs, origin) {
    const t0 = timing.now();
    /** @type {Envelope[]} */
    const fresh = [];
    for (const env of envs) {
      const id = envelopeId(env);
      const held = this.byId.get(id);
      if (held) {
        if (!sameEnvelope(held.env, env)) this.conflicts++;
        else if (origin === "server" && !held.onServer) this.markOnServer({ [id]: 0 });
        continue;
      }
      const known = this.serverKnown.has(id);
      const record = { room: this.room, device: env.device, seq: env.seq, env, origin,
                       onServer: origin === "server" || known };
      this.serverKnown.delete(id);
      this.remember(record);
      if (!record.onServer && env.device !== this.device) this.arrived.set(id, Date.now());
      this.save(record, id).catch(() => {});
      fresh.push(env);
    }
    timing.measure("receive: hold in the log (BrowserLog.addMany)", t0);
    return fresh;
  }

  /**
   * Sign a new message of this device and hold it: the next seq (never reused: it is
   * journalled before the message is shown or sent, and counted in IndexedDB with the
   * message), lamport one past the room's highest. Its write to IndexedDB is queued.
   * @param {DeviceKey} key
   * @param {string} author
   * @param {string} text
   * @param {number} ts
   * @returns {Promise<Envelope>}
   */
  author(key, author, text, ts) {
    const run = async () => {
      const t0 = timing.now();
      const head = this.heads.get(key.device);
      const seq = Math.max(this.nextSeq, (head ? head.highest : 0) + 1);
      const env = await createEnvelope(key, {
        room: this.room, author, seq, lamport: this.maxLamport() + 1, ts, text,
      });
      const id = envelopeId(env);
      this.journal.add(id, envelopeToObject(env));
      this.nextSeq = seq + 1;
      const record = { room: this.room, device: env.device, seq, env, origin: "self",
                       onServer: false };
      this.remember(record);
      this.save(record, id).catch(() => {});
      this.commit.put("meta", seq + 1, this.seqKey(key.device))
        .then(() => this.journal.remove([id]), () => {});
      timing.measure("send: sign, journal, hold (BrowserLog.author)", t0);
      return env;
    };
    const next = this.authoring.then(run, run);
    this.authoring = next.catch(() => {});
    return next;
  }

  /** The version vector: per device, the highest seq held with none missing below. */
  vector() {
    const vector = new Map();
    for (const [device, head] of this.heads) if (head.contiguous) vector.set(device, head.contiguous);
    return vector;
  }

  /** Whether some device's log has a hole (a seq held above a missing one). */
  hasGaps() {
    for (const head of this.heads.values()) if (head.highest > head.contiguous) return true;
    return false;
  }

  /**
   * Every envelope above the peer's vector, ordered by (device, seq).
   * @param {Map<string, number>} vector
   */
  missingFor(vector) {
    /** @type {Envelope[]} */
    const out = [];
    const devices = [...this.heads.keys()].sort();
    for (const device of devices) {
      const head = /** @type {Head} */ (this.heads.get(device));
      const from = vector.get(device) || 0;
      if (head.highest <= from) continue;
      // Walk the device's seqs above the vector when that is the shorter way, else its records.
      if (head.highest - from <= head.records.size) {
        for (let seq = from + 1; seq <= head.highest; seq++) {
          const record = head.records.get(seq);
          if (record) out.push(record.env);
        }
      } else {
        const above = [...head.records.values()].filter((r) => r.env.seq > from);
        for (const r of above.sort((a, b) => a.env.seq - b.env.seq)) out.push(r.env);
      }
    }
    return out;
  }

  /**
   * Up to `limit` envelopes in display order before `before` (a {lamport, device, seq}).
   * @param {OrderKey | null} before
   * @param {number} limit
   */
  page(before, limit) {
    const end = before ? atOrAfter(this.ordered, before) : this.ordered.length;
    const start = Math.max(0, end - limit);
    return { envs: this.ordered.slice(start, end).map((r) => r.env), more: start > 0 };
  }

  /** Envelopes the server has not acknowledged (and did not send us), oldest first; only
   * those committed to IndexedDB (a message goes to the server once it is durable here), and
   * another device's only once OTHERS_GRACE_MS has passed since it came.
   * @param {number} [limit]
   * @param {number} [now] ms since the epoch */
  outbox(limit = Infinity, now = Date.now()) {
    const settled = now - OTHERS_GRACE_MS;
    const records = [...this.pending.values()]
      .filter((r) => {
        const id = envelopeId(r.env);
        return !this.unsaved.has(id) && (this.arrived.get(id) ?? 0) <= settled;
      })
      .sort((a, b) => compareOrder(a.env, b.env));
    return records.slice(0, limit).map((r) => r.env);
  }

  outboxCount() {
    return this.pending.size;
  }

  /** @param {string} id */
  onServer(id) {
    const record = this.byId.get(id);
    return Boolean(record && record.onServer);
  }

  /**
   * The server holds these ids (id -> cursor): they leave the outbox at once, or skip it
   * later. The marks reach IndexedDB with the next batch (`putLater`): one lost to a closed
   * tab costs a re-upload, which the server takes as the duplicate it is.
   * @param {Record<string, number>} ids
   */
  markOnServer(ids) {
    for (const id of Object.keys(ids)) {
      const record = this.byId.get(id);
      if (!record) {
        this.serverKnown.set(id, ids[id]);
      } else if (!record.onServer) {
        record.onServer = true;
        this.pending.delete(id);
        this.arrived.delete(id);
        this.commit.putLater("messages", record).catch(() => {});
      }
    }
  }

  /**
   * Drop from the outbox what the server refused for good (the message stays in the log).
   * @param {string[]} ids
   */
  dropFromOutbox(ids) {
    this.markOnServer(Object.fromEntries(ids.map((id) => [id, 0])));
  }

  /** @param {number} cursor */
  setCursor(cursor) {
    this.cursor = cursor;
    return this.commit.put("meta", cursor, `${this.room}:cursor`);
  }

  /**
   * Cache a device's key and user; true if the cache changed. The key must be the device's.
   * A key from the server (or this device) replaces any earlier entry; a peer's claim is kept
   * only when nothing is known about the device.
   * @param {string} device
   * @param {string} user
   * @param {string} publicKey
   * @param {string} source
   */
  async rememberKey(device, user, publicKey, source) {
    if (!isNormalizedName(user, MAX_USERNAME_CHARS)) return false;
    if (!(await keyMatchesDevice(publicKey, device))) return false;
    const held = this.keys.get(device);
    if (held) {
      const same = held.user === user && held.public_key === publicKey && held.source === source;
      if (same || !AUTHORITATIVE.has(source)) return false;
    }
    const entry = { device, user, public_key: publicKey, source };
    this.keys.set(device, entry);
    // Not waited for: a key not yet committed is learnt again from the server or a peer.
    this.commit.put("keys", entry).catch(() => {});
    return true;
  }

  /** @param {string} device */
  keyFor(device) {
    return this.keys.get(device) || null;
  }

  knownKeys() {
    return [...this.keys.values()]
      .sort((a, b) => (a.device < b.device ? -1 : 1))
      .map((k) => ({ id: k.device, user: k.user, public_key: k.public_key }));
  }
}
