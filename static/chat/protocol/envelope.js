// @ts-check
// The signed chat message: validation of untrusted envelopes, signing, verifying, the
// display order and the Lamport horizon. The JavaScript twin of protocol/envelope.py.

import { canonicalBytes, ENVELOPE_DOMAIN, utf8Size } from "./canonical.js";
import { BadSignature, InvalidEnvelope, ProtocolError } from "./errors.js";
import {
  b64decode,
  b64encode,
  deviceIdFor,
  sign,
  SIGNATURE_BYTES,
  verifySignature,
} from "./keys.js";
import {
  LAMPORT_LEAD_MS,
  MAX_ROOM_CHARS,
  MAX_SAFE,
  MAX_TEXT_BYTES,
  MAX_TEXT_CHARS,
  MAX_USERNAME_CHARS,
} from "./limits.js";
import { isNormalizedName } from "./names.js";
import { isPlainObject, short } from "./strict-json.js";

/**
 * A signed message as the wire carries it (protocol/envelope.py), frozen once checked.
 * @typedef {Readonly<{room: string, author: string, device: string, seq: number,
 *   lamport: number, ts: number, text: string, sig: string}>} Envelope
 */
/**
 * Where a message sits in the display order: an envelope or a page token's key.
 * @typedef {{lamport: number, device: string, seq: number}} OrderKey
 */

/** The keys of an envelope on the wire, in wire order, exactly these and no others. */
export const FIELDS = ["room", "author", "device", "seq", "lamport", "ts", "text", "sig"];

export const DEVICE_ID = /^[0-9a-f]{32}$/;
// C0 controls except TAB and LF, and DEL (protocol/envelope.py _FORBIDDEN_CONTROL).
const FORBIDDEN_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;
// The Unicode White_Space set, as protocol/envelope.py WHITESPACE.
const ONLY_WHITESPACE = /^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

/**
 * @param {string} field
 * @param {string} problem
 * @returns {never}
 */
function fail(field, problem) {
  throw new InvalidEnvelope(`envelope field '${field}' ${problem}`);
}

/**
 * @param {string} name
 * @param {unknown} value
 * @param {number} low
 * @param {number} high
 */
function checkInt(name, value, low, high) {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < low || value > high) {
    fail(name, `must be an integer from ${low} to ${high}`);
  }
}

/**
 * Throws InvalidEnvelope unless `text` is a valid message text; the message says why.
 * @param {unknown} text
 */
export function checkText(text) {
  if (typeof text !== "string") fail("text", "must be a string");
  if (!text) fail("text", "must not be empty");
  const chars = [...text].length;
  if (chars > MAX_TEXT_CHARS) {
    fail("text", `is too long: at most ${MAX_TEXT_CHARS} characters, got ${chars}`);
  }
  if (!text.isWellFormed()) fail("text", "must be valid Unicode (it contains a lone surrogate)");
  const size = utf8Size(text);
  if (size > MAX_TEXT_BYTES) {
    fail("text", `is too long: at most ${MAX_TEXT_BYTES} bytes of UTF-8, got ${size}`);
  }
  const control = FORBIDDEN_CONTROL.exec(text);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    fail("text", `must not contain control character U+${code}`);
  }
  if (ONLY_WHITESPACE.test(text)) fail("text", "must not be only whitespace");
}

/**
 * @param {Record<string, any>} e
 */
function checkFields(e) {
  if (!isNormalizedName(e.room, MAX_ROOM_CHARS)) {
    fail("room", "must be a room name in normal form (see normalize_room)");
  }
  if (!isNormalizedName(e.author, MAX_USERNAME_CHARS)) {
    fail("author", "must be a user name in normal form (see normalize_username)");
  }
  if (typeof e.device !== "string" || !DEVICE_ID.test(e.device)) {
    fail("device", "must be 32 lowercase hexadecimal digits");
  }
  checkInt("seq", e.seq, 1, MAX_SAFE);
  checkInt("lamport", e.lamport, 1, MAX_SAFE);
  checkInt("ts", e.ts, 0, MAX_SAFE);
  checkText(e.text);
}

/**
 * @param {unknown} sig
 */
function checkSig(sig) {
  const problem = `must be unpadded base64url of ${SIGNATURE_BYTES} bytes`;
  if (typeof sig !== "string" || sig.length !== 86) fail("sig", problem);
  let raw;
  try {
    raw = b64decode(sig);
  } catch {
    fail("sig", problem);
  }
  if (raw.length !== SIGNATURE_BYTES) fail("sig", problem);
}

/**
 * Build a frozen envelope from untrusted parsed JSON, or throw InvalidEnvelope naming the
 * field: exactly the eight keys, exact types (no float or boolean for an integer), every limit.
 * Structural only: verify it with `verifyEnvelope` before storing, showing or forwarding it.
 * @returns {Envelope}
 * @param {unknown} obj untrusted
 */
export function envelopeFromObject(obj) {
  if (!isPlainObject(obj)) throw new InvalidEnvelope("envelope must be a JSON object");
  const keys = Object.keys(obj);
  const missing = FIELDS.filter((f) => !Object.hasOwn(obj, f));
  const extra = keys.filter((k) => !FIELDS.includes(k)).sort();
  if (missing.length || extra.length) {
    const problems = [];
    if (missing.length) problems.push("missing " + missing.map((m) => `'${m}'`).join(", "));
    if (extra.length) problems.push("unexpected " + extra.slice(0, 5).map((k) => short(k)).join(", "));
    throw new InvalidEnvelope("envelope has the wrong keys: " + problems.join("; "));
  }
  const env = /** @type {Record<string, any>} */ ({});
  for (const f of FIELDS) env[f] = obj[f];
  checkFields(env);
  checkSig(env.sig);
  return /** @type {Envelope} */ (Object.freeze(env));
}

/**
 * The envelope's id, `device:seq`: the key that makes duplicates impossible.
 * @param {{device: string, seq: number}} env
 */
export function envelopeId(env) {
  return `${env.device}:${env.seq}`;
}

/**
 * The device and seq an envelope id names; null for a string that is not an id.
 * @param {string} id
 * @returns {{device: string, seq: number} | null}
 */
export function envelopeIdParts(id) {
  const at = id.lastIndexOf(":");
  const seq = Number(id.slice(at + 1));
  if (at < 1 || !Number.isSafeInteger(seq) || seq < 1) return null;
  return { device: id.slice(0, at), seq };
}

/**
 * The display order every peer and the server share: (lamport, device, seq).
 * @param {OrderKey} a
 * @param {OrderKey} b
 */
export function compareOrder(a, b) {
  if (a.lamport !== b.lamport) return a.lamport < b.lamport ? -1 : 1;
  if (a.device !== b.device) return a.device < b.device ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/**
 * Throw ProtocolError("lamport_ahead") if the envelope's Lamport time lies past this
 * receiver's horizon, its clock in ms plus LAMPORT_LEAD_MS (protocol/envelope.py
 * check_lamport_horizon): one signed envelope cannot push the room's clock to the maximum.
 * The refusal is for now only; anti-entropy offers the envelope again later.
 * @param {Envelope} env
 * @param {number} nowMs
 */
export function checkLamportHorizon(env, nowMs) {
  const horizon = Math.min(MAX_SAFE, Math.max(0, nowMs) + LAMPORT_LEAD_MS);
  if (env.lamport > horizon) {
    throw new ProtocolError(`envelope ${envelopeId(env)} has Lamport time ${env.lamport}, past `
      + `this receiver's horizon ${horizon} (its clock in ms plus ${LAMPORT_LEAD_MS}); `
      + "refused for now", "lamport_ahead");
  }
}

/**
 * The canonical bytes an envelope's signature covers: every field but `sig`.
 * @param {Omit<Envelope, "sig">} e
 */
export function envelopeSignedBytes(e) {
  return canonicalBytes(ENVELOPE_DOMAIN,
    [e.room, e.author, e.device, e.seq, e.lamport, e.ts, e.text]);
}

/**
 * Whether two envelopes are the very same, signature included.
 * @param {Envelope} a
 * @param {Envelope} b
 */
export function sameEnvelope(a, b) {
  return FIELDS.every((f) => a[/** @type {keyof Envelope} */ (f)]
    === b[/** @type {keyof Envelope} */ (f)]);
}

/**
 * The envelope as compact JSON with the wire keys in wire order.
 * @param {Envelope} env
 */
export function envelopeToJSON(env) {
  return JSON.stringify(envelopeToObject(env));
}

/**
 * @param {Envelope} env
 * @returns {Record<string, string | number>}
 */
export function envelopeToObject(env) {
  const out = /** @type {Record<string, string | number>} */ ({});
  for (const f of FIELDS) out[f] = env[/** @type {keyof Envelope} */ (f)];
  return out;
}

/**
 * Sign a new envelope from this device (fields validated first, so nothing invalid is ever
 * signed). `key` is {privateKey: CryptoKey, device: string}.
 * @param {{privateKey: CryptoKey, device: string}} key
 * @param {{room: string, author: string, seq: number, lamport: number, ts: number,
 *   text: string}} fields
 * @returns {Promise<Envelope>}
 */
export async function createEnvelope(key, { room, author, seq, lamport, ts, text }) {
  const fields = { room, author, device: key.device, seq, lamport, ts, text };
  checkFields(fields);
  const sig = await sign(key.privateKey, envelopeSignedBytes(fields));
  return Object.freeze({ ...fields, sig: b64encode(sig) });
}

/** @type {Map<string, string>} base64url public key -> its device id */
const keyDevices = new Map();

/**
 * Throw BadSignature unless `publicKeyB64` is the envelope's device key and signed it.
 * @param {Envelope} env
 * @param {string} publicKeyB64
 */
export async function verifyEnvelope(env, publicKeyB64) {
  let raw;
  try {
    raw = b64decode(publicKeyB64);
  } catch (err) {
    throw new BadSignature(`cannot check envelope ${envelopeId(env)}: ${err.message}`);
  }
  // The key's device id is a SHA-256 digest: a round trip to WebCrypto's thread, worked out
  // once per key rather than once per message.
  let keyDevice = keyDevices.get(publicKeyB64);
  if (keyDevice === undefined) {
    try {
      keyDevice = await deviceIdFor(raw);
    } catch (err) {
      throw new BadSignature(`cannot check envelope ${envelopeId(env)}: ${err.message}`);
    }
    if (keyDevices.size > 10000) keyDevices.clear();
    keyDevices.set(publicKeyB64, keyDevice);
  }
  if (keyDevice !== env.device) {
    throw new BadSignature(`envelope ${envelopeId(env)} claims device ${env.device}, `
      + `but the key given belongs to device ${keyDevice}`);
  }
  try {
    await verifySignature(publicKeyB64, b64decode(env.sig), envelopeSignedBytes(env));
  } catch (err) {
    throw new BadSignature(`envelope ${envelopeId(env)} has a bad signature: ${err.message}`);
  }
}
