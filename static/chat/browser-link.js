// @ts-check
// One link of the browser's mesh (browser-mesh.js): the JavaScript twin of peer_agent/link.py.
//
// `Link` is the state the mesh keeps per other device; browser-negotiation.js (offer, answer,
// fingerprints) and browser-keepalive.js (the data channel, ping and pong) read and write it
// on the mesh's behalf. The helpers here keep a connection's pending operations from holding
// a link's signals once the mesh closes it, and read an offer's id.

export const CHANNEL_LABEL = "gibberish";

/**
 * A device of the room, as the roster gives it (its id checked against its key).
 * @typedef {{user: string, device: string, public_key: string}} Peer
 */

export const LinkState = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  DISCONNECTED: "disconnected",
  FAILED: "failed",
  CLOSED: "closed",
});

/** The link to one device: its connection, its channel and its state. */
export class Link {
  /**
   * @param {Peer} peer
   * @param {boolean} offerer
   */
  constructor(peer, offerer) {
    this.peer = peer;
    this.offerer = offerer;
    /** @type {string} a LinkState */
    this.state = LinkState.CONNECTING;
    /** @type {number | null} */
    this.rttMs = null;
    /** @type {number | null} */
    this.connectMs = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {RTCDataChannel | null} */
    this.channel = null;
    this.awaitingAnswer = false;
    /** @type {number | null} */
    this.offerOid = null;
    /** @type {number | null} */
    this.acceptedOid = null;
    this.unanswered = 0;
    this.descriptionSent = false;
    /** @type {object[]} candidates held until the offer or answer is sent */
    this.localCandidates = [];
    this.failures = 0;
    /** @type {Set<ReturnType<typeof setTimeout>>} */
    this.timers = new Set();
    this.pingN = 0;
    this.pingSentAt = 0;
    this.lastPong = 0;
    this.attemptStarted = 0;
    /** @type {Promise<void>} signals of this peer, one at a time */
    this.queue = Promise.resolve();
    /** @type {object | null} the selected candidate pair's path, as getStats() gives it */
    this.path = null;
    /** @type {string | null} the room this connection's offer and answer go through */
    this.signalRoom = null;
    this.peerRestarts = false; // the peer said it can restart ICE on a live connection
    this.restarts = 0;
    this.attempts = 0;
  }
}

/** @type {WeakMap<RTCPeerConnection, {closed: Promise<never>, close: () => void}>} */
const closers = new WeakMap();

/**
 * A promise that fails once this mesh closes `pc` (closeConnection).
 * @param {RTCPeerConnection} pc
 */
function closerOf(pc) {
  let entry = closers.get(pc);
  if (!entry) {
    /** @type {() => void} */
    let close = () => {};
    /** @type {Promise<never>} */
    const closed = new Promise((_, reject) => {
      close = () => reject(new Error("the connection was closed meanwhile"));
    });
    closed.catch(() => {});
    entry = { closed, close };
    closers.set(pc, entry);
  }
  return entry;
}

/**
 * `op`, an operation of `pc`, or an Error once the mesh closes `pc`. A connection closed while
 * an operation is pending leaves that operation's promise unsettled for good (the WebRTC
 * spec's operations chain is abandoned): awaited bare in a link's signal queue, it would hold
 * every later signal of that peer, so that the link never forms.
 * @template T
 * @param {RTCPeerConnection} pc
 * @param {Promise<T>} op
 * @returns {Promise<T>}
 */
export function orClosed(pc, op) {
  return Promise.race([op, closerOf(pc).closed]);
}

/**
 * Close `pc`, failing whatever waits on it through orClosed.
 * @param {RTCPeerConnection} pc
 */
export function closeConnection(pc) {
  closerOf(pc).close();
  pc.close();
}

/**
 * The `oid` of an offer or answer, or null when it has none (an older peer) or a bad one.
 * @param {any} payload untrusted: from a peer
 * @returns {number | null}
 */
export function offerId(payload) {
  const oid = payload && payload.oid;
  return Number.isSafeInteger(oid) && oid > 0 ? oid : null;
}

/** @param {string} device */
export function short(device) {
  return String(device).slice(0, 8);
}

