// @ts-check
// The browser peer's IndexedDB database (one per user of this browser): opening it at
// DB_VERSION (stores and indexes, and bringing an older version up to date), the device's
// Ed25519 key, and the small request helpers the log reads with (browser-log.js).

import { b64encode, deviceIdFor } from "./protocol/keys.js";

/** @typedef {import("./protocol/envelope.js").OrderKey} OrderKey */
/** @typedef {import("./protocol/keys.js").DeviceKey} DeviceKey */

// Version 2 added the `order` index (display order, for pages of older messages), the
// `outbox` index and the heads in `meta`.
const DB_VERSION = 2;

/**
 * @template T
 * @param {IDBRequest<T>} request
 * @returns {Promise<T>}
 */
export function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * @param {IDBTransaction} tx
 * @returns {Promise<void>}
 */
export function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
  });
}

/**
 * Every key of `room` in the messages store or one of its indexes (all start with the room).
 * @param {string} room
 */
export function roomRange(room) {
  return IDBKeyRange.bound([room], [room, []]);
}

/**
 * The order index's key of an order key (`order`: room, lamport, device, seq).
 * @param {string} room
 * @param {OrderKey} key
 */
export function orderKey(room, key) {
  return [room, key.lamport, key.device, key.seq];
}

/**
 * The newest `count` records of `range` in `index`, in the index's order, and whether older
 * ones are left: the key just before them is found by a key cursor's advance, then one getAll
 * reads the rest (getAll reads forwards only).
 * @param {IDBIndex} index
 * @param {IDBKeyRange} range
 * @param {number} count at least 1
 * @returns {Promise<{rows: any[], more: boolean}>}
 */
export async function newest(index, range, count) {
  /** @type {IDBValidKey | null} */
  const before = await new Promise((resolve, reject) => {
    const request = index.openKeyCursor(range, "prev");
    let moved = false;
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor || moved) resolve(cursor ? cursor.key : null);
      else {
        moved = true;
        cursor.advance(count);
      }
    };
    request.onerror = () => reject(request.error);
  });
  if (before === null) return { rows: await done(index.getAll(range)), more: false };
  const upper = /** @type {IDBValidKey} */ (range.upper);
  const rows = await done(index.getAll(IDBKeyRange.bound(before, upper, true, range.upperOpen)));
  return { rows, more: true };
}

/**
 * Open (and on first use create, or bring up to DB_VERSION) the IndexedDB database of `user`
 * in this browser. A page of an older version open elsewhere closes its copy when asked.
 * @param {string} user
 */
export async function openDatabase(user) {
  const request = indexedDB.open(`gibberish:${user}`, DB_VERSION);
  request.onupgradeneeded = (event) => {
    const db = request.result;
    const tx = /** @type {IDBTransaction} */ (request.transaction);
    let messages;
    if (event.oldVersion < 1) {
      db.createObjectStore("device");
      messages = db.createObjectStore("messages", { keyPath: ["room", "device", "seq"] });
      messages.createIndex("room", "room");
      db.createObjectStore("meta");
      db.createObjectStore("keys", { keyPath: "device" });
    } else {
      messages = tx.objectStore("messages");
    }
    if (event.oldVersion < 2) {
      messages.createIndex("order", ["room", "env.lamport", "env.device", "env.seq"]);
      messages.createIndex("outbox", ["room", "outbox"]);
      // What the server does not hold yet goes into the outbox index; the heads are made on
      // the next open of each room (none is stored).
      if (event.oldVersion >= 1) {
        messages.openCursor().onsuccess = function () {
          const cursor = this.result;
          if (!cursor) return;
          if (!cursor.value.onServer) cursor.update({ ...cursor.value, outbox: 1 });
          cursor.continue();
        };
      }
    }
  };
  // A tab of an older version holding the database open keeps it from being brought up to
  // date: say so (the open goes on by itself once that tab closes).
  request.onblocked = () => {
    console.warn("another Gibberish tab holds an older version of this browser's log open; "
                 + "close it to go on");
  };
  const db = await done(request);
  db.onversionchange = () => db.close();
  return db;
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
