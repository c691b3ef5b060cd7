// @ts-check
// The Gibberish protocol in browser JavaScript: a port of the Python package `protocol/`
// (see docs/protocol.md). Pure code: no sockets, no storage, no clock; WebCrypto does the
// hashing and Ed25519. tests/browser checks this port against tests/protocol/vectors.json.

export const ENVELOPE_DOMAIN = "gibberish/envelope/v1";
export const FINGERPRINT_DOMAIN = "gibberish/dtls-fingerprint/v1";
export const VECTOR_DIGEST_DOMAIN = "gibberish/vector-digest/v1";

export const MAX_TEXT_CHARS = 4000;
export const MAX_TEXT_BYTES = 12000;
export const MAX_FRAME_BYTES = 16384;
// Bytes a packed frame leaves free for its room tag (protocol/limits.py ROOM_TAG_BYTES).
export const ROOM_TAG_BYTES = 400;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const MAX_BATCH = 100;
export const MAX_VECTOR_DEVICES = 10000;
export const MAX_USERNAME_CHARS = 32;
export const MAX_ROOM_CHARS = 64;
export const SIGNATURE_BYTES = 64;
export const KEY_BYTES = 32;
/** How far past the receiver's clock (ms since the epoch) a Lamport time may lie. */
// Every channel frame type, as protocol/channel.py lists them (a test holds the two equal).
// This peer relays no signals, so it refuses "sig" frames like any it cannot use.
export const FRAME_TYPES = ["msg", "vv", "vvd", "batch", "keys", "ack", "links", "sig", "ping", "pong"];
export const LAMPORT_LEAD_MS = 24 * 60 * 60 * 1000;

/**
 * A signed message as the wire carries it (protocol/envelope.py), frozen once checked.
 * @typedef {Readonly<{room: string, author: string, device: string, seq: number,
 *   lamport: number, ts: number, text: string, sig: string}>} Envelope
 */
/**
 * Where a message sits in the display order: an envelope or a page token's key.
 * @typedef {{lamport: number, device: string, seq: number}} OrderKey
 */
/**
 * This device's key: the private half for signing, the public one and its device id.
 * @typedef {{privateKey: CryptoKey, publicKey: string, device: string}} DeviceKey
 */

/** The keys of an envelope on the wire, in wire order, exactly these and no others. */
export const FIELDS = ["room", "author", "device", "seq", "lamport", "ts", "text", "sig"];

const DEVICE_ID = /^[0-9a-f]{32}$/;
// C0 controls except TAB and LF, and DEL (protocol/envelope.py _FORBIDDEN_CONTROL).
const FORBIDDEN_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;
// The Unicode White_Space set, as protocol/envelope.py WHITESPACE.
const ONLY_WHITESPACE = /^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;
const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;
const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Untrusted input broke a protocol rule; `code` names the rule (as in protocol/errors.py). */
export class ProtocolError extends Error {
  /**
   * @param {string} message
   * @param {string} [code]
   */
  constructor(message, code = "protocol_error") {
    super(message);
    this.code = code;
  }
}
export class InvalidEnvelope extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "invalid_envelope"); }
}
export class BadSignature extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "bad_signature"); }
}
export class FrameTooLarge extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "too_large"); }
}
export class Conflict extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "conflict"); }
}

const encoder = new TextEncoder();

/**
 * UTF-8 size of `text`; a lone surrogate counts 3 bytes, as Python's "surrogatepass".
 * @param {string} text
 */
export function utf8Size(text) {
  return encoder.encode(text).length;
}

/**
 * The domain-separated, length-prefixed bytes that get signed:
 * utf8(domain) 0x00 { uint32_be(len(utf8(field))) utf8(field) }, integers as decimal text.
 * @param {string} domain
 * @param {(string | number)[]} fields
 */
export function canonicalBytes(domain, fields) {
  if (domain.includes("\0")) throw new TypeError("a signing domain must not contain NUL");
  const parts = [encoder.encode(domain), new Uint8Array([0])];
  for (const field of fields) {
    let text;
    if (typeof field === "string") {
      if (!field.isWellFormed()) throw new TypeError("canonical fields must be valid Unicode");
      text = field;
    } else if (typeof field === "number" && Number.isSafeInteger(field)) {
      text = String(field);
    } else {
      throw new TypeError(`canonical fields are strings or safe integers, got ${typeof field}`);
    }
    const bytes = encoder.encode(text);
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, bytes.length, false);
    parts.push(length, bytes);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * Unpadded base64url, the one text form of keys and signatures on the wire.
 * @param {Uint8Array} bytes
 */
export function b64encode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Decode canonical base64url (padding optional); throws ProtocolError on anything else.
 * @param {unknown} text
 */
export function b64decode(text) {
  if (typeof text !== "string" || !B64URL.test(text)) {
    throw new ProtocolError("not base64url: only A-Z, a-z, 0-9, '-' and '_' are allowed");
  }
  const body = text.replace(/=+$/, "");
  if (body.length % 4 === 1) throw new ProtocolError("not base64url: impossible length");
  const padded = body + "=".repeat((4 - (body.length % 4)) % 4);
  if (text !== body && text !== padded) throw new ProtocolError("not base64url: wrong padding");
  const binary = atob(padded.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  if (b64encode(bytes) !== body) {
    throw new ProtocolError("not base64url: non-canonical trailing bits");
  }
  return bytes;
}

/**
 * @param {Uint8Array} bytes
 */
function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The device id of a raw Ed25519 public key: the first 32 hex digits of its SHA-256.
 * @param {Uint8Array<ArrayBuffer>} publicRaw
 */
export async function deviceIdFor(publicRaw) {
  if (publicRaw.length !== KEY_BYTES) {
    throw new ProtocolError(`an Ed25519 public key has ${KEY_BYTES} bytes, got ${publicRaw.length}`);
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicRaw));
  return hex(digest).slice(0, 32);
}

/**
 * Whether a base64url public key is the key of `device` (ids name exactly one key).
 * @param {unknown} publicKeyB64
 * @param {unknown} device
 */
export async function keyMatchesDevice(publicKeyB64, device) {
  try {
    return (await deviceIdFor(b64decode(publicKeyB64))) === device;
  } catch {
    return false;
  }
}

// -- names --------------------------------------------------------------------------------

/**
 * Whether `s` is a user (max 32) or room (max 64) name in normal form. JavaScript has no
 * Unicode case folding, so lower-casing stands in for it: a name this accepts and Python
 * refuses (e.g. one with "ß") cannot belong to a registered account, and every author is
 * checked against the key the server registered to that account anyway.
 * @param {unknown} s
 * @param {number} maxChars
 */
export function isNormalizedName(s, maxChars) {
  if (typeof s !== "string" || s.length === 0 || s.length > 1024) return false;
  const name = s.normalize("NFKC").toLowerCase().normalize("NFKC").trim();
  if (name !== s) return false;
  const chars = [...name];
  if (chars.length > maxChars || !LETTER_OR_DIGIT.test(chars[0])) return false;
  return chars.every((ch) => LETTER_OR_DIGIT.test(ch) || ch === "-" || ch === "_" || ch === ".");
}

// -- envelopes ----------------------------------------------------------------------------

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
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    && !(value instanceof JsonNumber);
}

/**
 * @param {unknown} value
 * @param {number} [limit]
 */
function short(value, limit = 40) {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= limit ? text : text.slice(0, limit) + "…";
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

// -- signatures ---------------------------------------------------------------------------

const importedKeys = new Map();

/**
 * Import a base64url Ed25519 public key for verifying (cached); ProtocolError if malformed.
 * @param {string} publicKeyB64
 * @returns {Promise<CryptoKey>}
 */
export async function importPublicKey(publicKeyB64) {
  let key = importedKeys.get(publicKeyB64);
  if (key) return key;
  const raw = b64decode(publicKeyB64);
  if (raw.length !== KEY_BYTES) {
    throw new ProtocolError(`public key is malformed: an Ed25519 key has ${KEY_BYTES} bytes`);
  }
  try {
    key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, true, ["verify"]);
  } catch (err) {
    throw new ProtocolError(`public key is malformed: ${err.message}`);
  }
  if (importedKeys.size > 10000) importedKeys.clear();
  importedKeys.set(publicKeyB64, key);
  return key;
}

/**
 * @param {CryptoKey} privateKey
 * @param {BufferSource} bytes
 */
export async function sign(privateKey, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, privateKey, bytes));
}

/**
 * Throw BadSignature unless `signature` is the key's signature of `bytes`.
 * @param {string} publicKeyB64
 * @param {Uint8Array<ArrayBuffer>} signature
 * @param {BufferSource} bytes
 */
export async function verifySignature(publicKeyB64, signature, bytes) {
  let key;
  try {
    key = await importPublicKey(publicKeyB64);
  } catch (err) {
    throw new BadSignature(`cannot check the signature: ${err.message}`);
  }
  if (signature.length !== SIGNATURE_BYTES) {
    throw new BadSignature(`a signature has ${SIGNATURE_BYTES} bytes, got ${signature.length}`);
  }
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, signature, bytes);
  if (!ok) throw new BadSignature("the signature does not match the signed data and key");
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

// -- JSON frames --------------------------------------------------------------------------

/**
 * A JSON number that is not a safe integer (it has a fraction or an exponent, or is too large
 * to read exactly). Kept apart so that an integer field never accepts it, as Python refuses a
 * float where an integer is expected; `text` is the number exactly as it was sent.
 */
export class JsonNumber {
  /** @param {string} text */
  constructor(text) {
    this.text = text;
    this.value = Number(text);
  }
}

const STRING_TOKEN = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER_TOKEN = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
// The JSON policy of protocol/strict_json.py, which every Python receiver applies to frames.
export const MAX_JSON_DEPTH = 32;
export const MAX_INT_DIGITS = 64;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * @param {string} text
 * @returns {any}
 */
function parseStrictJSON(text) {
  let i = 0;
  /** @type {(what: string) => never} */
  const bad = (what) => { throw new InvalidEnvelope(`frame is not valid JSON: ${what} at ${i}`); };
  const space = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const string = () => {
    STRING_TOKEN.lastIndex = i;
    const m = STRING_TOKEN.exec(text);
    if (!m) bad("invalid string");
    i += m[0].length;
    const parsed = JSON.parse(m[0]);
    if (LONE_SURROGATE.test(parsed)) bad("a string holds a lone surrogate");
    return parsed;
  };
  /** @param {number} depth */
  const nest = (depth) => {
    if (depth + 1 > MAX_JSON_DEPTH) bad(`nested too deeply: at most ${MAX_JSON_DEPTH} levels`);
  };
  /** @type {(depth: number) => any} */
  const value = (depth) => {
    space();
    const c = text[i];
    if (c === "{") {
      nest(depth);
      i++;
      const obj = {};
      const seen = new Set();
      space();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        space();
        if (text[i] !== '"') bad("expected a key");
        const key = string();
        if (seen.has(key)) bad(`key ${short(key)} appears more than once`);
        seen.add(key);
        space();
        if (text[i] !== ":") bad("expected ':'");
        i++;
        // defineProperty: a key "__proto__" stays a plain property.
        Object.defineProperty(obj, key, {
          value: value(depth + 1), enumerable: true, writable: true, configurable: true,
        });
        space();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "}") { i++; return obj; }
        bad("expected ',' or '}'");
      }
    }
    if (c === "[") {
      nest(depth);
      i++;
      /** @type {unknown[]} */
      const arr = [];
      space();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value(depth + 1));
        space();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "]") { i++; return arr; }
        bad("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) { i += 4; return true; }
    if (text.startsWith("false", i)) { i += 5; return false; }
    if (text.startsWith("null", i)) { i += 4; return null; }
    NUMBER_TOKEN.lastIndex = i;
    const m = NUMBER_TOKEN.exec(text);
    if (!m) bad("unexpected character");
    i += m[0].length;
    if (m[1] || m[2]) {
      if (m[0].length > 2 * MAX_INT_DIGITS) bad(`number longer than ${2 * MAX_INT_DIGITS} characters`);
      if (!Number.isFinite(Number(m[0]))) bad("number too large");
      return new JsonNumber(m[0]);
    }
    if (m[0].replace("-", "").length > MAX_INT_DIGITS) bad(`number has more than ${MAX_INT_DIGITS} digits`);
    const n = Number(m[0]);
    return Number.isSafeInteger(n) ? n : new JsonNumber(m[0]);
  };
  const result = value(0);
  space();
  if (i !== text.length) bad("extra data");
  return result;
}

/**
 * @param {number} size
 */
function checkFrameSize(size) {
  if (size > MAX_FRAME_BYTES) {
    throw new FrameTooLarge(
      `frame is too large: at most ${MAX_FRAME_BYTES} bytes allowed, got ${size} or more`);
  }
}

/**
 * Parse one JSON frame from untrusted input, its size checked first: FrameTooLarge over
 * MAX_FRAME_BYTES, InvalidEnvelope for invalid JSON or an object with a repeated key (which
 * parsers resolve differently, so a signed field could be read two ways).
 * @param {string} text
 * @returns {any} the parsed JSON, untrusted
 */
export function parseFrame(text) {
  if (typeof text !== "string") throw new InvalidEnvelope("frame must be text");
  checkFrameSize(text.length > MAX_FRAME_BYTES ? text.length : utf8Size(text));
  return parseStrictJSON(text);
}

/**
 * Serialise a frame as compact JSON, refusing one too large to send (FrameTooLarge).
 * @param {object} obj
 */
export function encodeFrame(obj) {
  const text = JSON.stringify(obj);
  checkFrameSize(utf8Size(text));
  return text;
}

// -- version vectors and sync frames ------------------------------------------------------

/** A version vector (device -> highest contiguous seq) from untrusted JSON, as a Map. */
/**
 * @param {any} obj untrusted
 * @returns {Map<string, number>}
 */
export function vectorFromObject(obj) {
  if (!isPlainObject(obj)) throw new InvalidEnvelope("version vector must be a JSON object");
  const entries = Object.entries(obj);
  if (entries.length > MAX_VECTOR_DEVICES) {
    throw new InvalidEnvelope(`version vector names too many devices: at most `
      + `${MAX_VECTOR_DEVICES}, got ${entries.length}`);
  }
  const vector = new Map();
  for (const [device, seq] of entries) {
    if (!DEVICE_ID.test(device)) {
      throw new InvalidEnvelope(
        "version vector keys must be device ids (32 lowercase hexadecimal digits)");
    }
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
      throw new InvalidEnvelope(
        `version vector entry for device ${device} must be an integer from 0 to ${MAX_SAFE}`);
    }
    if (seq) vector.set(device, seq);
  }
  return vector;
}

/**
 * The vector as a JSON-ready object, devices sorted, zero entries left out.
 * @param {Map<string, number>} vector
 * @returns {Record<string, number>}
 */
export function vectorToObject(vector) {
  /** @type {Record<string, number>} */
  const out = {};
  for (const device of [...vector.keys()].sort()) {
    const seq = vector.get(device);
    if (seq) out[device] = seq;
  }
  return out;
}

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

// Which way a link goes (protocol/links.py): the less direct of its selected pair's two
// ICE candidate types.
export const CANDIDATE_TYPES = ["host", "prflx", "srflx", "relay"];

/**
 * @param {string} localType
 * @param {string} remoteType
 */
export function pathKind(localType, remoteType) {
  for (const type of [localType, remoteType]) {
    if (!CANDIDATE_TYPES.includes(type)) {
      throw new ProtocolError(`unknown ICE candidate type ${String(type).slice(0, 20)}`);
    }
  }
  return CANDIDATE_TYPES.indexOf(localType) >= CANDIDATE_TYPES.indexOf(remoteType)
    ? localType : remoteType;
}

/**
 * @param {string} digest
 */
export function digestFrame(digest) {
  return encodeFrame({ t: "vvd", digest });
}

// -- delivery that needs no particular link (protocol/catchup.py) ---------------------------

const DIGEST_BYTES = 16;
const DIGEST_CHARS = Math.ceil((DIGEST_BYTES * 8) / 6);
const DIGEST = new RegExp(`^[A-Za-z0-9_-]{${DIGEST_CHARS}}$`);

/**
 * A short fingerprint of a version vector (Map), so linked peers compare logs without sending
 * them: SHA-256 of canonicalBytes(VECTOR_DIGEST_DOMAIN, [device, seq, …]), devices sorted,
 * cut to 16 bytes, unpadded base64url (protocol.vector.vector_digest).
 * @param {Map<string, number>} vector
 */
export async function vectorDigest(vector) {
  /** @type {(string | number)[]} */
  const fields = [];
  for (const device of [...vector.keys()].sort()) {
    const seq = vector.get(device);
    if (seq) fields.push(device, seq);
  }
  const bytes = canonicalBytes(VECTOR_DIGEST_DOMAIN, fields);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return b64encode(digest.slice(0, DIGEST_BYTES));
}

/**
 * Whether `theirs` holds some envelope `ours` lacks (both Maps device -> seq).
 * @param {Map<string, number>} theirs
 * @param {Map<string, number>} ours
 */
export function holdsMore(theirs, ours) {
  for (const [device, seq] of theirs) if (seq > (ours.get(device) || 0)) return true;
  return false;
}

/**
 * The ids `device:seq` above our vector: messages we lack (malformed ids are skipped).
 * @param {Iterable<string>} ids
 * @param {Map<string, number>} ours
 * @returns {Set<string>}
 */
export function lacking(ids, ours) {
  const found = new Set();
  for (const id of ids) {
    const at = String(id).indexOf(":");
    const seq = String(id).slice(at + 1);
    if (at >= 0 && /^[0-9]+$/.test(seq) && Number(seq) > (ours.get(id.slice(0, at)) || 0)) {
      found.add(id);
    }
  }
  return found;
}

/** Seconds between two digests on a link, by default (protocol/catchup.py SYNC_INTERVAL). */
export const SYNC_INTERVAL = 3.0;
export const HINT_GAP = 0.25;
export const PULL_TIMEOUT = 10.0;
export const SERVER_PULL_DELAY = 0.2;

/**
 * What CatchUp decided: send a peer our vector's digest, pull from a peer, read the server.
 * @typedef {{kind: "digest" | "pull", device: string} | {kind: "pull_server"}} CatchUpEffect
 */

/**
 * What a device pulls, from whom and when: the twin of protocol/catchup.py CatchUp, the clock
 * (seconds) passed in. Effects: {kind: "digest", device} (send our vector's digest),
 * {kind: "pull", device} (send our vector), {kind: "pull_server"} (read the server's history).
 */
export class CatchUp {
  constructor({ interval = SYNC_INTERVAL, hintGap = HINT_GAP, pullTimeout = PULL_TIMEOUT,
                serverDelay = SERVER_PULL_DELAY } = {}) {
    if (!(interval > 0)) throw new RangeError("the digest interval must be positive");
    this.interval = interval;
    this.hintGap = hintGap;
    this.pullTimeout = pullTimeout;
    this.serverDelay = serverDelay;
    this.links = new Map(); // device -> {digestAt, lastDigest, pullingSince, again}
    this.named = new Set();
    this.serverAt = null;
    this.serverPulling = false;
  }

  /**
   * A data channel to `device` opened: pull from it, and compare digests from now on.
   * @param {string} device
   * @param {number} now
   */
  linkUp(device, now) {
    this.links.set(device, { digestAt: now + this.interval, lastDigest: null,
                             pullingSince: null, again: false });
    return this.pull(device, now);
  }

  /**
   * @param {string} device
   */
  linkDown(device) {
    this.links.delete(device);
  }

  /**
   * @param {string} device
   * @param {number} now
   */
  pulling(device, now) {
    const link = this.links.get(device);
    return Boolean(link) && this.inFlight(link, now);
  }

  /**
   * A linked peer's digest: if it differs from ours, pull (not while a pull is under way).
   * @param {string} device
   * @param {string} theirs
   * @param {string} ours
   * @param {number} now
   */
  digestReceived(device, theirs, ours, now) {
    const link = this.links.get(device);
    if (!link || theirs === ours || this.inFlight(link, now)) return [];
    return this.pull(device, now);
  }

  /**
   * A linked peer's vector (its pull): besides answering it, pull if it holds more.
   * @param {string} device
   * @param {Map<string, number>} theirs
   * @param {Map<string, number>} ours
   * @param {number} now
   */
  vectorReceived(device, theirs, ours, now) {
    const link = this.links.get(device);
    if (!link || !holdsMore(theirs, ours) || this.inFlight(link, now)) return [];
    return this.pull(device, now);
  }

  /**
   * The last batch of a peer's answer (more: false) arrived: the pull is over.
   * @param {string} device
   * @param {number} now
   */
  answerEnded(device, now) {
    const link = this.links.get(device);
    if (!link) return [];
    link.pullingSince = null;
    if (link.again) {
      link.again = false;
      return this.pull(device, now);
    }
    return [];
  }

  /**
   * A live message from `device` left a gap: pull from it (again, after the one under way).
   * @param {string} device
   * @param {number} now
   */
  gapSeen(device, now) {
    const link = this.links.get(device);
    if (!link) return [];
    if (this.inFlight(link, now)) {
      link.again = true;
      return [];
    }
    return this.pull(device, now);
  }

  /**
   * Fresh messages by `authors` came from `source` (a device, or null for the server): each
   * other linked peer that does not report an open channel to every author gets our digest
   * soon. `reports` maps a device to the Set of devices it reports open channels to.
   * @param {string | null} source
   * @param {Iterable<string>} authors
   * @param {Map<string, Set<string>>} reports
   * @param {number} now
   */
  fresh(source, authors, reports, now) {
    for (const [device, link] of this.links) {
      if (device === source) continue;
      const linked = reports.get(device);
      if ([...authors].every((a) => a === device || (linked && linked.has(a)))) continue;
      const earliest = link.lastDigest === null ? now : link.lastDigest + this.hintGap;
      link.digestAt = Math.min(link.digestAt, Math.max(now, earliest));
    }
  }

  /** The server stored these ids; those we lack are read from it soon, unless a peer
   * brings them first.
   * @param {Iterable<string>} ids
   * @param {Map<string, number>} ours
   * @param {number} now
   */
  serverNamed(ids, ours, now) {
    const missing = lacking(ids, ours);
    if (!missing.size) return;
    for (const id of missing) this.named.add(id);
    if (this.serverAt === null) this.serverAt = now + this.serverDelay;
  }

  serverPullEnded() {
    this.serverPulling = false;
  }

  /**
   * What is due at `now`: digests to send, and a server read for named ids still lacking.
   * @param {number} now
   * @param {Map<string, number>} ours
   * @param {boolean} serverUp
   */
  due(now, ours, serverUp) {
    /** @type {CatchUpEffect[]} */
    const effects = [];
    for (const device of [...this.links.keys()].sort()) {
      const link = this.links.get(device);
      if (now >= link.digestAt) {
        effects.push({ kind: "digest", device });
        link.lastDigest = now;
        link.digestAt = now + this.interval;
      }
    }
    if (this.named.size) {
      // A server that is down cannot be read; once back, the join reads its history.
      this.named = serverUp ? lacking(this.named, ours) : new Set();
      if (!this.named.size) this.serverAt = null;
    }
    if (this.named.size && serverUp && !this.serverPulling && this.serverAt !== null
        && now >= this.serverAt) {
      effects.push({ kind: "pull_server" });
      this.serverPulling = true;
      this.named = new Set();
      this.serverAt = null;
    }
    return effects;
  }

  /** When `due` next has something to say (null: only after new input). */
  nextDue() {
    const times = [...this.links.values()].map((l) => l.digestAt);
    if (this.named.size && this.serverAt !== null && !this.serverPulling) times.push(this.serverAt);
    return times.length ? Math.min(...times) : null;
  }

  /**
   * @param {string} device
   * @param {number} now
   * @returns {CatchUpEffect[]}
   */
  pull(device, now) {
    const link = this.links.get(device);
    if (!link) return [];
    link.pullingSince = now;
    return [{ kind: "pull", device }];
  }

  /**
   * @param {{pullingSince: number | null}} link
   * @param {number} now
   */
  inFlight(link, now) {
    return link.pullingSince !== null && now - link.pullingSince < this.pullTimeout;
  }
}

// Link reports (protocol/links.py): a peer's own data channels, for the network view.
export const LINK_STATES = ["connecting", "connected", "disconnected", "failed", "closed"];
export const MAX_LINKS = 64;
export const MAX_RTT_MS = 600000;

/**
 * @param {any[]} links
 */
export function linksFrame(links) {
  return encodeFrame({ t: "links", links: links.slice(0, MAX_LINKS).map((l) => ({
    device: l.device, state: l.state, rtt_ms: l.rtt_ms ?? null })) });
}

/**
 * Validate a link report already parsed with parseFrame; returns its links.
 * @param {any} obj untrusted
 */
export function parseLinksFrame(obj) {
  const fields = obj && typeof obj === "object" && !Array.isArray(obj) ? Object.keys(obj) : [];
  if (fields.length !== 2 || obj.t !== "links" || !("links" in obj)) {
    throw new InvalidEnvelope('a links frame is {"t": "links", "links": [...]}');
  }
  if (!Array.isArray(obj.links)) throw new InvalidEnvelope("links frame: links must be a list");
  if (obj.links.length > MAX_LINKS) {
    throw new InvalidEnvelope(`links frame: more than ${MAX_LINKS} links`);
  }
  return obj.links.map((/** @type {any} */ link, /** @type {number} */ i) => {
    const keys = link && typeof link === "object" && !Array.isArray(link)
      ? Object.keys(link).sort().join(",") : "";
    if (keys !== "device,rtt_ms,state") {
      throw new InvalidEnvelope(`links frame: link ${i} must have exactly device, state, rtt_ms`);
    }
    if (typeof link.device !== "string" || !DEVICE_ID.test(link.device)) {
      throw new InvalidEnvelope(`links frame: link ${i} has an invalid device id`);
    }
    if (!LINK_STATES.includes(link.state)) {
      throw new InvalidEnvelope(`links frame: link ${i} has an unknown state`);
    }
    // A round-trip time is a float: the strict parser keeps it as a JsonNumber.
    const rtt = link.rtt_ms instanceof JsonNumber ? link.rtt_ms.value : link.rtt_ms;
    if (rtt !== null && !(typeof rtt === "number" && Number.isFinite(rtt) && rtt >= 0
                          && rtt <= MAX_RTT_MS)) {
      throw new InvalidEnvelope(`links frame: link ${i} has an invalid rtt_ms`);
    }
    return { device: link.device, state: link.state, rtt_ms: rtt };
  });
}

/**
 * A frame of `room` as sent on a data channel: `"room"` first, then the frame's own fields
 * (protocol/channel.py tag_room). Every frame but ping and pong belongs to a room.
 * @param {string} text
 * @param {string} room
 */
export function tagRoom(text, room) {
  return `{"room":${JSON.stringify(room)},${text.slice(1)}`;
}

/**
 * The frame a parsed room frame carries, once its room is checked to be `room` (the only room
 * this page is in); ProtocolError for a frame without a room or of another room.
 * @param {any} raw untrusted: parsed JSON
 * @param {string} room
 * @returns {any}
 */
export function untagRoom(raw, room) {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return raw;
  if (typeof raw.room !== "string") {
    throw new InvalidEnvelope("a channel frame needs 'room': the name of the room it belongs to");
  }
  if (raw.room !== room) {
    throw new ProtocolError(`a frame for room ${raw.room.slice(0, 64)}, not ${room}`, "not_in_room");
  }
  const frame = { ...raw };
  delete frame.room;
  return frame;
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

// -- the DTLS fingerprint in offers and answers ------------------------------------------

/**
 * The DTLS fingerprint an SDP commits to, as signed in `fp_sig` (peer_agent/mesh.py
 * sdp_fingerprint): every `a=fingerprint:` value, trimmed, distinct, sorted, joined by ",".
 * @param {string} sdp
 */
export function sdpFingerprint(sdp) {
  const values = new Set();
  for (const raw of sdp.split(/\r\n|\r|\n/)) {
    const line = raw.trim();
    if (line.startsWith("a=fingerprint:")) {
      const value = line.slice("a=fingerprint:".length).trim();
      if (value) values.add(value);
    }
  }
  if (!values.size) throw new InvalidEnvelope("the SDP has no a=fingerprint line");
  return [...values].sort().join(",");
}

/**
 * The bytes a device signs to vouch for the DTLS fingerprint it sends to `receiver`.
 * @param {string} room
 * @param {string} sender
 * @param {string} receiver
 * @param {string} fingerprint
 */
export function fingerprintSignedBytes(room, sender, receiver, fingerprint) {
  return canonicalBytes(FINGERPRINT_DOMAIN, [room, sender, receiver, fingerprint]);
}

// -- page tokens --------------------------------------------------------------------------

/**
 * A page token `lamport.device.seq`: the order key of a page's first message.
 * @param {OrderKey} env
 */
export function orderToken(env) {
  return `${env.lamport}.${env.device}.${env.seq}`;
}

/**
 * The order key in a page token, or null for a missing or malformed one (protocol/paging.py
 * parse_order_token): lamport and seq at most MAX_SAFE, a device of at most 32 characters.
 * @returns {OrderKey | null}
 * @param {unknown} raw
 */
export function parseOrderToken(raw) {
  if (typeof raw !== "string" || !raw) return null;
  const parts = raw.split(".");
  if (parts.length !== 3 || parts[1].length > 32) return null;
  const [lamport, seq] = [parts[0], parts[2]].map(
    (text) => (/^[0-9]{1,20}$/.test(text) ? Number(text) : NaN));
  if (!(lamport <= MAX_SAFE && seq <= MAX_SAFE)) return null;
  return { lamport, device: parts[1], seq };
}
