// @ts-check
// The browser peer's log of a room, in IndexedDB (log-db.js opens the database, one per user
// of this browser, and keeps the device's key): the room's messages with its outbox and
// server cursor, and the device keys learnt. The JavaScript twin of peer_agent/log.py.
//
// A room's log is not read whole: a page holds its newest messages (LOG_WINDOW to twice
// that), the outbox and what is not committed yet, and which messages it holds per device
// (log-heads.js); older pages and what a peer lacks are read from IndexedDB's indexes when
// asked for. Opening a room of 10,000 messages reads about as much as opening one of 400.

import {
  compareOrder,
  createEnvelope,
  envelopeFromObject,
  envelopeId,
  envelopeIdParts,
  envelopeToObject,
  sameEnvelope,
} from "./protocol/envelope.js";
import { keyMatchesDevice } from "./protocol/keys.js";
import { MAX_USERNAME_CHARS } from "./protocol/limits.js";
import { isNormalizedName } from "./protocol/names.js";
import { GroupCommit, Journal } from "./log-commit.js";
import { committed, done, newest, orderKey, roomRange } from "./log-db.js";
import { Heads } from "./log-heads.js";
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
 * `outbox` is 1 while the server does not hold it (the `outbox` index), absent after.
 * @typedef {{room: string, device: string, seq: number, env: Envelope, origin: string,
 *   onServer: boolean, outbox?: number}} LogRecord
 */
/**
 * A device key learnt, and from whom ("self", "server" or a peer).
 * @typedef {{device: string, user: string, public_key: string, source: string}} KnownKey
 */

export { loadOrCreateDeviceKey, openDatabase } from "./log-db.js";

/** How many of a room's newest messages a page reads on open (the chat view shows 200); it
 * holds up to twice as many before it lets the oldest go. */
export const LOG_WINDOW = 400;
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
 * A new record of `env` to hold.
 * @param {string} room
 * @param {Envelope} env
 * @param {string} origin
 * @param {boolean} onServer
 * @returns {LogRecord}
 */
function newRecord(room, env, origin, onServer) {
  /** @type {LogRecord} */
  const record = { room, device: env.device, seq: env.seq, env, origin, onServer };
  if (!onServer) record.outbox = 1;
  return record;
}

/**
 * The room's log: every verified envelope held, in IndexedDB, with the outbox (what the server
 * has not acknowledged) and per-device heads for the version vector. In memory: the newest
 * messages (a suffix of the log in display order), the outbox, what is not committed yet
 * and the heads. Call `load(device)` once before anything else.
 *
 * Writes change memory at once and reach IndexedDB by group commit (log-commit.js);
 * `flushed()` says when everything written so far is committed, and this device's own
 * messages are journalled in localStorage until then (docs/browser-peer.md, "When a message
 * is durable"). The heads ride with every batch, so they describe what IndexedDB holds.
 */
export class BrowserLog {
  /**
   * @param {IDBDatabase} db
   * @param {string} room
   */
  constructor(db, room) {
    this.db = db;
    this.room = room;
    /** @type {LogRecord[]} the newest records in display order: every record held from the
     * first of them on (or the whole log, while `whole`) */
    this.recent = [];
    /** Whether `recent` is the whole log. */
    this.whole = true;
    /** @type {Map<string, LogRecord>} id -> record held in memory: recent, outbox, unsaved */
    this.byId = new Map();
    /** @type {Map<string, LogRecord>} id -> record the server has not acknowledged (the outbox) */
    this.pending = new Map();
    /** Which messages the log holds, per device. */
    this.heads = new Heads();
    /** Whether the heads changed since the last batch that wrote them. */
    this.headsChanged = false;
    /** Whether load() had to rebuild the heads from the room's keys (a diagnostic). */
    this.headsRebuilt = false;
    /** Whether a batch holding messages failed to commit: the heads stored after it claim
     * messages IndexedDB lacks, and say so. */
    this.headsSuspect = false;
    /** The highest lamport held. */
    this.lamport = 0;
    /** @type {Map<string, KnownKey>} device -> key */
    this.keys = new Map();
    /** @type {Map<string, number>} id -> cursor, for ids the server holds that we lack */
    this.serverKnown = new Map();
    this.cursor = 0;
    this.conflicts = 0;
    this.commit = new GroupCommit(db, ["messages", "meta", "keys"]);
    this.commit.beforeStart.push((puts) => {
      if (!this.headsChanged) return;
      this.headsChanged = false;
      puts.push({ store: "meta", value: this.heads.toStored(this.headsSuspect),
                  key: this.headsKey() });
    });
    // Told before the next batch starts, so that the heads it writes say so.
    this.commit.onFail.push(() => {
      this.headsSuspect = true;
      this.headsChanged = true;
    });
    this.journal = new Journal(`${db.name}:journal:${room}`);
    /** @type {Map<string, LogRecord>} id -> record not committed yet: not uploaded, not
     * acknowledged, and not in IndexedDB's answers */
    this.unsaved = new Map();
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
   * Read the room's newest messages, its outbox, heads, keys and counters; then replay what an
   * earlier page of this device authored but could not commit (the journal) into IndexedDB.
   * The heads are rebuilt from the room's keys when none are stored (a database of version 1),
   * when they say they are suspect, or when they miss a message read (written by something
   * else than this log).
   * @param {string | null} [device] this device, whose next seq is read
   */
  async load(device = null) {
    const tx = this.db.transaction(["messages", "meta", "keys"], "readonly");
    const messages = tx.objectStore("messages");
    const meta = tx.objectStore("meta");
    const range = roomRange(this.room);
    const [window, outbox, stored, keys, cursor, counted] = await Promise.all([
      newest(messages.index("order"), range, LOG_WINDOW),
      done(messages.index("outbox").getAll(IDBKeyRange.only([this.room, 1]))),
      done(meta.get(this.headsKey())),
      done(tx.objectStore("keys").getAll()),
      done(meta.get(`${this.room}:cursor`)),
      device ? done(meta.get(this.seqKey(device))) : Promise.resolve(1),
    ]);
    let heads = Heads.fromStored(stored);
    const read = [...window.rows, ...outbox];
    if (!heads || !read.every((r) => /** @type {Heads} */ (heads).has(r.device, r.seq))) {
      heads = Heads.fromKeys(await done(messages.getAllKeys(range)));
      this.headsRebuilt = true;
    }
    this.heads = heads;
    this.cursor = cursor || 0;
    this.recent = window.rows;
    this.whole = !window.more;
    for (const row of this.recent) this.hold(row);
    for (const row of outbox) this.hold(this.byId.get(envelopeId(row.env)) || row);
    if (this.recent.length) this.lamport = this.recent[this.recent.length - 1].env.lamport;
    for (const k of keys) this.keys.set(k.device, k);
    this.device = device;
    if (device) await this.replay(device, counted || 1);
    // Rebuilt heads are stored with the next batch (or by themselves, a moment later).
    if (this.headsRebuilt && !this.headsChanged) {
      this.commit.putLater("meta", this.heads.toStored(), this.headsKey()).catch(() => {});
    }
  }

  /**
   * Replay into IndexedDB what an earlier page of this device authored but could not commit
   * (the journal), and set the next seq.
   * @param {string} device
   * @param {number} counted the next seq IndexedDB holds
   */
  async replay(device, counted) {
    const replayed = this.journalled(device);
    if (replayed.length) {
      for (const r of replayed) this.remember(r);
      const write = this.db.transaction(["messages", "meta"], "readwrite");
      for (const r of replayed) write.objectStore("messages").put(r);
      const highest = Math.max(...replayed.map((r) => r.seq));
      write.objectStore("meta").put(Math.max(counted, highest + 1), this.seqKey(device));
      write.objectStore("meta").put(this.heads.toStored(), this.headsKey());
      this.headsChanged = false;
      await committed(write);
    }
    this.journal.clear();
    this.nextSeq = Math.max(counted, this.heads.highest(device) + 1);
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
      if (env.room !== this.room || env.device !== device || this.heads.has(device, env.seq)) continue;
      out.push(newRecord(this.room, env, "self", false));
    }
    return out;
  }

  /** @param {string} device */
  seqKey(device) {
    return `${this.room}:${device}:next_seq`;
  }

  headsKey() {
    return `${this.room}:heads`;
  }

  /**
   * Queue a record's write; it is uploaded or acknowledged only once committed.
   * @param {LogRecord} record
   * @param {string} id
   */
  save(record, id) {
    this.unsaved.set(id, record);
    return this.commit.put("messages", record).then(() => {
      this.unsaved.delete(id);
      this.release(id);
    });
  }

  /** Settles when every write made so far is in IndexedDB. */
  flushed() {
    return this.commit.flushed();
  }

  /**
   * Keep a record read from IndexedDB in memory (it is counted in the heads already).
   * @param {LogRecord} record
   */
  hold(record) {
    const id = envelopeId(record.env);
    this.byId.set(id, record);
    if (!record.onServer) this.pending.set(id, record);
  }

  /**
   * Hold a new record: count it in the heads and keep it in memory; it goes into the newest
   * messages unless it is older than all of them and older ones are in IndexedDB only.
   * @param {LogRecord} record
   */
  remember(record) {
    this.hold(record);
    this.heads.add(record.env.device, record.env.seq);
    this.headsChanged = true;
    this.lamport = Math.max(this.lamport, record.env.lamport);
    const recent = this.recent;
    const last = recent[recent.length - 1];
    // Messages nearly always arrive in order: append, else binary search for the place.
    if (!last || compareOrder(last.env, record.env) < 0) recent.push(record);
    else if (this.whole || compareOrder(recent[0].env, record.env) < 0) {
      recent.splice(after(recent, record.env), 0, record);
    }
    if (recent.length > 2 * LOG_WINDOW) {
      this.whole = false;
      for (const old of recent.splice(0, recent.length - LOG_WINDOW)) this.release(envelopeId(old.env));
    }
  }

  /**
   * Let a record leave memory once nothing needs it there (IndexedDB holds it).
   * @param {string} id
   */
  release(id) {
    const record = this.byId.get(id);
    if (!record || this.pending.has(id) || this.unsaved.has(id)) return;
    if (this.whole || (this.recent.length && compareOrder(this.recent[0].env, record.env) <= 0)) return;
    this.byId.delete(id);
  }

  /**
   * The envelope if it is in memory (the newest messages, the outbox, what is not committed).
   * @param {string} id
   */
  get(id) {
    const record = this.byId.get(id);
    return record ? record.env : null;
  }

  /**
   * Whether the log holds the message, in memory or not.
   * @param {string} id
   */
  has(id) {
    const parts = envelopeIdParts(id);
    return parts !== null && this.heads.has(parts.device, parts.seq);
  }

  maxLamport() {
    return this.lamport;
  }

  /**
   * Hold verified envelopes; returns the new ones at once, held in memory, their write to
   * IndexedDB queued (`flushed()` says when it is done). A duplicate is skipped; a different
   * envelope under a held id is a conflict: the first one is kept (one held in IndexedDB
   * only is compared there, later).
   * `origin` is "self", "peer:<device>" or "server".
   * @param {Envelope[]} envs
   * @param {string} origin
   * @returns {Promise<Envelope[]>}
   */
  async addMany(envs, origin) {
    const t0 = timing.now();
    /** @type {Envelope[]} */
    const fresh = [];
    /** @type {Envelope[]} */
    const stored = [];
    for (const env of envs) {
      const id = envelopeId(env);
      const held = this.byId.get(id);
      if (held) {
        if (!sameEnvelope(held.env, env)) this.conflicts++;
        else if (origin === "server" && !held.onServer) this.markOnServer({ [id]: 0 });
        continue;
      }
      // Held but not in memory: committed, and the server has it (the outbox is in memory).
      if (this.heads.has(env.device, env.seq)) {
        stored.push(env);
        continue;
      }
      const record = newRecord(this.room, env, origin,
                               origin === "server" || this.serverKnown.has(id));
      this.serverKnown.delete(id);
      this.remember(record);
      if (!record.onServer && env.device !== this.device) this.arrived.set(id, Date.now());
      this.save(record, id).catch(() => {});
      fresh.push(env);
    }
    if (stored.length) this.countConflicts(stored).catch(() => {});
    timing.measure("receive: hold in the log (BrowserLog.addMany)", t0);
    return fresh;
  }

  /**
   * Compare envelopes with those IndexedDB holds under their ids; count the different ones.
   * @param {Envelope[]} envs
   */
  async countConflicts(envs) {
    const store = this.db.transaction("messages", "readonly").objectStore("messages");
    const held = await Promise.all(envs.map((e) => done(store.get([this.room, e.device, e.seq]))));
    envs.forEach((env, i) => {
      if (held[i] && !sameEnvelope(held[i].env, env)) this.conflicts++;
    });
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
      const seq = Math.max(this.nextSeq, this.heads.highest(key.device) + 1);
      const env = await createEnvelope(key, {
        room: this.room, author, seq, lamport: this.maxLamport() + 1, ts, text,
      });
      const id = envelopeId(env);
      this.journal.add(id, envelopeToObject(env));
      this.nextSeq = seq + 1;
      const record = newRecord(this.room, env, "self", false);
      this.remember(record);
      // Out of the journal once both the message and its count are committed (they may go in
      // two batches, and the first may fail).
      Promise.all([this.save(record, id), this.commit.put("meta", seq + 1, this.seqKey(key.device))])
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
    return this.heads.vector();
  }

  /** Whether some device's log has a hole (a seq held above a missing one). */
  hasGaps() {
    return this.heads.hasGaps();
  }

  /**
   * Every envelope above the peer's vector, ordered by (device, seq), in pages of at most
   * `size` (one device's each): read from IndexedDB by key range, with what is not committed
   * yet. A room's whole log is never held at once for a peer that lacks it all.
   * @param {Map<string, number>} vector
   * @param {number} size
   * @returns {AsyncGenerator<Envelope[]>}
   */
  async *missingPages(vector, size) {
    for (const device of [...this.heads.devices.keys()].sort()) {
      const to = this.heads.highest(device);
      let from = vector.get(device) || 0;
      while (from < to) {
        // Taken with the transaction: what leaves `unsaved` later is committed before it reads.
        const unsaved = [...this.unsaved.values()].filter((r) => r.device === device && r.seq > from);
        const store = this.db.transaction("messages", "readonly").objectStore("messages");
        /** @type {LogRecord[]} */
        const rows = await done(store.getAll(
          IDBKeyRange.bound([this.room, device, from + 1], [this.room, device, to]), size));
        const last = rows.length === size ? rows[rows.length - 1].seq : to;
        /** @type {Map<number, Envelope>} */
        const bySeq = new Map(rows.map((r) => [r.seq, r.env]));
        for (const r of unsaved) if (r.seq <= last && !bySeq.has(r.seq)) bySeq.set(r.seq, r.env);
        const page = [...bySeq.keys()].sort((a, b) => a - b)
          .map((seq) => /** @type {Envelope} */ (bySeq.get(seq)));
        if (page.length) yield page;
        from = last;
      }
    }
  }

  /**
   * Every envelope above the peer's vector, ordered by (device, seq).
   * @param {Map<string, number>} vector
   * @returns {Promise<Envelope[]>}
   */
  async missingFor(vector) {
    /** @type {Envelope[]} */
    const out = [];
    for await (const page of this.missingPages(vector, 1000)) out.push(...page);
    return out;
  }

  /**
   * Up to `limit` envelopes in display order before `before` (a {lamport, device, seq}), and
   * whether older ones are left: from memory when the newest messages cover them, else from
   * IndexedDB's `order` index once what is written so far is committed.
   * @param {OrderKey | null} before
   * @param {number} limit
   * @returns {Promise<{envs: Envelope[], more: boolean}>}
   */
  async page(before, limit) {
    const recent = this.recent;
    const end = before ? atOrAfter(recent, before) : recent.length;
    if (this.whole || end >= limit) {
      const start = Math.max(0, end - limit);
      return { envs: recent.slice(start, end).map((r) => r.env), more: start > 0 || !this.whole };
    }
    await this.commit.flushed().catch(() => {});
    const index = this.db.transaction("messages", "readonly").objectStore("messages").index("order");
    const upper = before ? orderKey(this.room, before) : [this.room, []];
    const range = IDBKeyRange.bound([this.room], upper, false, Boolean(before));
    const { rows, more } = await newest(index, range, limit);
    return { envs: rows.map((r) => r.env), more };
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

  /**
   * Whether the server holds the message: every message held outside the outbox is.
   * @param {string} id
   */
  onServer(id) {
    if (this.pending.has(id)) return false;
    const record = this.byId.get(id);
    return record ? record.onServer : this.has(id);
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
        if (!this.has(id)) this.serverKnown.set(id, ids[id]);
      } else if (!record.onServer) {
        record.onServer = true;
        delete record.outbox;
        this.pending.delete(id);
        this.arrived.delete(id);
        this.commit.putLater("messages", record).catch(() => {});
        this.release(id);
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
