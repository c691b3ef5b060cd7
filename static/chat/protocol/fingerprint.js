// @ts-check
// The DTLS fingerprint an offer or answer commits to, and the bytes a device signs to vouch
// for it: the JavaScript twin of protocol/fingerprint.py.

import { canonicalBytes, FINGERPRINT_DOMAIN } from "./canonical.js";
import { InvalidEnvelope } from "./errors.js";

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
