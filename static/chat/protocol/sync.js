// @ts-check
// Anti-entropy frames on a peer data channel: live messages (msg), version vectors (vv), their
// digests (vvd), catch-up batches (batch) and device keys (keys), parsed, built and packed
// into frames that fit. The JavaScript twin of protocol/sync.py.

import { utf8Size } from "./canonical.js";
import { DEVICE_ID, envelopeFromObject, envelopeToJSON, envelopeToObject } from "./envelope.js";
import { InvalidEnvelope } from "./errors.js";
import { MAX_BATCH, MAX_FRAME_BYTES, MAX_USERNAME_CHARS, ROOM_TAG_BYTES } from "./limits.js";
import { isNormalizedName } from "./names.js";
import { encodeFrame, isPlainObject, parseFrame, short } from "./strict-json.js";
import { DIGEST_BYTES, vectorFromObject, vectorToObject } from "./vector.js";

/** @import { Envelope } from "./envelope.js" */

const DIGEST_CHARS = Math.ceil((DIGEST_BYTES * 8) / 6);
const DIGEST = new RegExp(`^[A-Za-z0-9_-]{${DIGEST_CHARS}}$`);

/**
 * A device key a peer reports, checked for shape (its id is checked against the key later).
 * @param {unknown} item
 * @param {string} where
 */
function knownDeviceFromObject(item, where) {
  if (!isPlainObject(item)) throw new InvalidEnvelope(`${where} must be a JSON object`);
  checkKeys(item, ["id", "user", "public_key"], where);
  if (typeof item.id !== "string" || !DEVICE_ID.test(item.id)) {
    throw new InvalidEnvelope(`${where}: device key 'id' must be 32 lowercase hexadecimal digits`);
  }
  if (!isNormalizedName(item.user, MAX_USERNAME_CHARS)) {
    throw new InvalidEnvelope(`${where}: device key ${item.id}: 'user' must be a user name in normal form`);
  }
  if (typeof item.public_key !== "string") {
    throw new InvalidEnvelope(`${where}: device key ${item.id}: 'public_key' must be a string`);
  }
  return Object.freeze({ id: item.id, user: item.user, public_key: item.public_key });
}

/**
 * @param {object} obj
 * @param {string[]} expected
 * @param {string} what
 */
function checkKeys(obj, expected, what) {
  const missing = expected.filter((k) => !Object.hasOwn(obj, k)).sort();
  const extra = Object.keys(obj).filter((k) => !expected.includes(k)).sort();
  if (!missing.length && !extra.length) return;
  const problems = [];
  if (missing.length) problems.push("missing " + missing.map((m) => `'${m}'`).join(", "));
  if (extra.length) problems.push("unexpected " + extra.slice(0, 5).map((k) => short(k)).join(", "));
  throw new InvalidEnvelope(`${what} has the wrong keys: ` + problems.join("; "));
}

/** @type {Record<string, string[]>} */
const FRAME_KEYS = {
  msg: ["t", "env"],
  vv: ["t", "vector"],
  vvd: ["t", "digest"],
  batch: ["t", "envs", "more"],
  keys: ["t", "devices"],
};

/**
 * Parse one sync frame (msg, vv, vvd, batch, keys) from untrusted input, validating every
 * field and envelope; signatures and key-to-device bindings are not checked here. Returns
 * {t:"msg", env} | {t:"vv", vector: Map} | {t:"vvd", digest} | {t:"batch", envs, more} |
 * {t:"keys", devices}.
 * @param {string} text
 */
export function parseSyncFrame(text) {
  return syncFrameFromObject(parseFrame(text));
}

/**
 * A checked anti-entropy frame.
 * @typedef {{t: "msg", env: Envelope} | {t: "vv", vector: Map<string, number>}
 *   | {t: "vvd", digest: string} | {t: "batch", envs: Envelope[], more: boolean}
 *   | {t: "keys", devices: {id: string, user: string, public_key: string}[]}} SyncFrame
 */

/**
 * parseSyncFrame for an object already parsed.
 * @param {any} obj untrusted
 * @returns {SyncFrame}
 */
export function syncFrameFromObject(obj) {
  if (!isPlainObject(obj)) throw new InvalidEnvelope("sync frame must be a JSON object");
  const kind = obj.t;
  if (typeof kind !== "string" || !Object.hasOwn(FRAME_KEYS, kind)) {
    throw new InvalidEnvelope(`unknown sync frame type ${short(kind)}: `
      + "expected one of msg, vv, vvd, batch, keys");
  }
  checkKeys(obj, FRAME_KEYS[kind], `'${kind}' frame`);
  if (kind === "msg") return { t: "msg", env: envelopeFromObject(obj.env) };
  if (kind === "vv") return { t: "vv", vector: vectorFromObject(obj.vector) };
  if (kind === "vvd") {
    if (typeof obj.digest !== "string" || !DIGEST.test(obj.digest)) {
      throw new InvalidEnvelope(`'vvd' frame: 'digest' must be ${DIGEST_CHARS} characters of base64url`);
    }
    return { t: "vvd", digest: obj.digest };
  }
  if (kind === "batch") {
    if (!Array.isArray(obj.envs)) {
      throw new InvalidEnvelope("'batch' frame: 'envs' must be a JSON array of envelopes");
    }
    if (obj.envs.length > MAX_BATCH) {
      throw new InvalidEnvelope(`'batch' frame: too many envelopes: at most ${MAX_BATCH}, `
        + `got ${obj.envs.length}`);
    }
    if (typeof obj.more !== "boolean") {
      throw new InvalidEnvelope("'batch' frame: 'more' must be true or false");
    }
    const envs = obj.envs.map((item, index) => {
      try {
        return envelopeFromObject(item);
      } catch (err) {
        throw new InvalidEnvelope(`'batch' frame: envelope ${index}: ${err.message}`);
      }
    });
    return { t: "batch", envs, more: obj.more };
  }
  if (!Array.isArray(obj.devices)) {
    throw new InvalidEnvelope("'keys' frame: 'devices' must be a JSON array of device keys");
  }
  if (obj.devices.length > MAX_BATCH) {
    throw new InvalidEnvelope(`'keys' frame: too many devices: at most ${MAX_BATCH}, `
      + `got ${obj.devices.length}`);
  }
  const seen = new Set();
  const devices = obj.devices.map((item, index) => {
    const device = knownDeviceFromObject(item, `'keys' frame: device ${index}`);
    if (seen.has(device.id)) {
      throw new InvalidEnvelope(`'keys' frame: device ${index}: device ${device.id} is listed `
        + "more than once");
    }
    seen.add(device.id);
    return device;
  });
  return { t: "keys", devices };
}

/**
 * @param {Envelope} env
 */
export function msgFrame(env) {
  return encodeFrame({ t: "msg", env: envelopeToObject(env) });
}

/**
 * @param {Map<string, number>} vector
 */
export function vectorFrame(vector) {
  return encodeFrame({ t: "vv", vector: vectorToObject(vector) });
}

/**
 * @param {string} digest
 */
export function digestFrame(digest) {
  return encodeFrame({ t: "vvd", digest });
}

/**
 * Split items of the given JSON sizes into [start, end) runs that each fit one frame.
 * @param {number[]} sizes
 * @param {number} overhead
 * @returns {[number, number][]}
 */
function pack(sizes, overhead) {
  /** @type {[number, number][]} */
  const groups = [];
  let start = 0;
  let size = overhead;
  sizes.forEach((item, index) => {
    const count = index - start;
    let cost = item + (count ? 1 : 0);
    if (count && (count >= MAX_BATCH || size + cost > MAX_FRAME_BYTES)) {
      groups.push([start, index]);
      start = index;
      size = overhead;
      cost = item;
    }
    size += cost;
  });
  groups.push([start, sizes.length]);
  return groups;
}

/**
 * Pack envelopes, in the order given, into as few encoded batch frames as fit (at most
 * MAX_BATCH envelopes and MAX_FRAME_BYTES each); every frame but the last says more=true, the
 * last says `moreAfter`. No envelopes give one empty batch.
 * @param {Envelope[]} envs
 * @param {boolean} moreAfter
 */
export function batchesFor(envs, moreAfter) {
  const sizes = envs.map((env) => utf8Size(envelopeToJSON(env)));
  const overhead = utf8Size(encodeFrame({ t: "batch", envs: [], more: false })) + ROOM_TAG_BYTES;
  const groups = pack(sizes, overhead);
  return groups.map(([start, end], index) => encodeFrame({
    t: "batch",
    envs: envs.slice(start, end).map(envelopeToObject),
    more: index < groups.length - 1 ? true : moreAfter,
  }));
}

/**
 * Pack device keys {id, user, public_key} into as few keys frames as fit (none for none).
 * @param {{id: string, user: string, public_key: string}[]} devices
 */
export function keysFramesFor(devices) {
  if (!devices.length) return [];
  const items = devices.map((d) => ({ id: d.id, user: d.user, public_key: d.public_key }));
  const sizes = items.map((d) => utf8Size(JSON.stringify(d)));
  const overhead = utf8Size(encodeFrame({ t: "keys", devices: [] })) + ROOM_TAG_BYTES;
  return pack(sizes, overhead).map(([start, end]) =>
    encodeFrame({ t: "keys", devices: items.slice(start, end) }));
}
