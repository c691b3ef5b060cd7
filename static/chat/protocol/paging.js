// @ts-check
// Page tokens for walking a log in display order, `lamport.device.seq`: the JavaScript twin
// of protocol/paging.py.

import { MAX_SAFE } from "./limits.js";

/** @import { OrderKey } from "./envelope.js" */

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
