// @ts-check
// Link reports, a peer's own data channels for the network view, and which way a link goes:
// the JavaScript twin of protocol/links.py.

import { DEVICE_ID } from "./envelope.js";
import { InvalidEnvelope, ProtocolError } from "./errors.js";
import { encodeFrame, JsonNumber } from "./strict-json.js";

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
