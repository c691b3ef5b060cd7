// @ts-check
// Version vectors: for each device, the highest seq up to which a log holds every envelope,
// and the short digest linked peers compare. The JavaScript twin of protocol/vector.py.

import { canonicalBytes, VECTOR_DIGEST_DOMAIN } from "./canonical.js";
import { DEVICE_ID } from "./envelope.js";
import { InvalidEnvelope } from "./errors.js";
import { b64encode } from "./keys.js";
import { MAX_SAFE, MAX_VECTOR_DEVICES } from "./limits.js";
import { isPlainObject } from "./strict-json.js";

export const DIGEST_BYTES = 16;

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
