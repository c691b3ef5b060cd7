// @ts-check
// The browser peer's WebRTC mesh: one RTCPeerConnection and one ordered, reliable data
// channel labelled "gibberish" per other device, Python agents and browsers alike, shared by
// every room the page and that device have in common (each room sees it through a RoomMesh,
// browser-room-mesh.js, which tags its frames with the room). It keeps the rules of
// peer_agent/mesh.py, so both kinds of peer interoperate:
//
// - Offer rule: of each pair of devices, the one with the smaller id offers; only it retries,
//   with exponential backoff and jitter, each time with a fresh connection.
//
// This module is the registry of links (the roster in, links opened, failed, retried and
// closed); how a connection is negotiated and signed is in browser-negotiation.js, the data
// channel and its ping and pong in browser-keepalive.js, the per-link state in
// browser-link.js.

import { utf8Size } from "./protocol/canonical.js";
import { ProtocolError } from "./protocol/errors.js";
import { MAX_FRAME_BYTES } from "./protocol/limits.js";
import { timing } from "./timing.js";
import { CHANNEL_LABEL, closeConnection, Link, LinkState, short } from "./browser-link.js";
import { Keepalive } from "./browser-keepalive.js";
import { Negotiation } from "./browser-negotiation.js";

// What the other modules take from here.
export { CHANNEL_LABEL, LinkState };
/** @typedef {import("./browser-link.js").Peer} Peer */

// Above this much queued data a sender waits before adding more (Chromium closes a channel
// whose send buffer overflows).
const HIGH_WATER = 1 << 20;

/**
 * Peer connections to every other device of the page's rooms, kept open and healed.
 * `sendSignal(room, to, kind, payload)` goes through the server in that room; `roomFor(device)`
 * names the room to signal a device through; `onFrame(peer, text)` gets every text frame that
 * is not a ping or pong; `onLink(peer, state)` every link state change.
 */
export class Mesh {
  /**
   * @param {object} options
   * @param {import("./protocol/keys.js").DeviceKey} options.key
   * @param {(device: string) => string} options.roomFor
   * @param {(room: string, to: string, kind: string, payload: object) => Promise<void>}
   *   options.sendSignal
   * @param {(peer: Peer, text: string) => void} options.onFrame
   * @param {(peer: Peer, state: string) => void} options.onLink
   * @param {(peer: Peer) => void} [options.onPath]
   * @param {RTCIceServer[]} [options.iceServers]
   * @param {number} [options.retryBase]
   * @param {number} [options.retryMax]
   * @param {number} [options.pingInterval]
   * @param {number} [options.pingTimeout]
   * @param {number} [options.recoverGrace]
   * @param {number} [options.connectTimeout]
   * @param {number} [options.answerTimeout]
   * @param {number} [options.spareOffers] offers made ahead (0: none)
   * @param {number} [options.spareMaxAge] ms a spare offer is kept
   * @param {Console} [options.log]
   */
  constructor({ key, roomFor, sendSignal, onFrame, onLink, onPath = () => {}, iceServers = [],
                retryBase = 500, retryMax = 15000, pingInterval = 2000, pingTimeout = 6000,
                recoverGrace = 10000, connectTimeout = 10000, answerTimeout = 400,
                spareOffers = 3, spareMaxAge = 20000, log = console }) {
    this.key = key;
    this.device = key.device;
    this.roomFor = roomFor;
    this.sendSignal = sendSignal;
    this.onFrame = onFrame;
    this.onLink = onLink;
    this.onPath = onPath;
    this.iceServers = iceServers;
    this.retryBase = retryBase;
    this.retryMax = retryMax;
    this.log = log;
    /** @type {Map<string, Peer>} */
    this.roster = new Map();
    /** @type {Map<string, Link>} */
    this.links = new Map();
    this.refused = 0;
    this.closed = false;
    this.negotiation = new Negotiation(this, { connectTimeout, answerTimeout, spareOffers,
                                               spareMaxAge });
    this.keepalive = new Keepalive(this, { pingInterval, pingTimeout, recoverGrace });
    this.negotiation.makeSpares();
  }

  /**
   * Use these ICE servers (the join reply's) from now on; spares made with others are dropped.
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    this.iceServers = iceServers;
    this.negotiation.iceServersChanged();
  }

  /**
   * Make the mesh match the rooms' rosters together ({user, device, public_key}, the caller
   * checked each id against its key): link new devices, close removed ones, relink a changed
   * one.
   * @param {Iterable<Peer>} peers
   */
  updateRoster(peers) {
    if (this.closed) return;
    const roster = new Map();
    for (const peer of peers) if (peer.device !== this.device) roster.set(peer.device, peer);
    for (const [device, known] of [...this.roster]) {
      const now = roster.get(device);
      if (!now || now.user !== known.user || now.public_key !== known.public_key) {
        this.closeLink(device);
      }
    }
    for (const [device, peer] of roster) {
      if (!this.roster.has(device)) {
        this.roster.set(device, peer);
        this.openLink(peer);
      }
    }
  }

  /**
   * Offer to `device` now, skipping the backoff, if this side offers and is not linked.
   * @param {string} device
   */
  nudge(device) {
    const link = this.links.get(device);
    if (!link || !link.offerer || link.state === LinkState.CONNECTED) return false;
    if (link.pc && link.awaitingAnswer && link.unanswered === 0) return false; // just offered
    link.failures = 0;
    this.negotiation.offer(link);
    return true;
  }

  /**
   * Close the link to `device` and forget it until the roster lists it again.
   * @param {string} device
   */
  peerLeft(device) {
    this.closeLink(device);
  }

  /**
   * Act on a signal relayed by the server in `room`; refuse (and count) anything not to be
   * trusted. Signals of one peer are handled one at a time, in the order they came.
   * @param {string} fromUser
   * @param {string} fromDevice
   * @param {string} kind
   * @param {any} payload untrusted: from a peer, through the server
   * @param {string} room the room the signal came through
   * @returns {Promise<void>}
   */
  handleSignal(fromUser, fromDevice, kind, payload, room) {
    const link = this.links.get(fromDevice);
    const peer = this.roster.get(fromDevice);
    if (!link || !peer) {
      this.refuse(null, `${kind} from device ${short(fromDevice)}, not in the roster`);
      return Promise.resolve();
    }
    if (peer.user !== fromUser) {
      this.refuse(link, `${kind} from ${fromUser} for a device the roster gives to ${peer.user}`);
      return Promise.resolve();
    }
    const run = async () => {
      if (this.closed || this.links.get(fromDevice) !== link) return;
      try {
        if (kind === "offer") await this.negotiation.acceptOffer(link, payload, room);
        else if (kind === "answer") await this.negotiation.acceptAnswer(link, payload, room);
        else if (kind === "candidate") await this.negotiation.addCandidate(link, payload);
        else throw new ProtocolError(`unknown signal kind ${String(kind).slice(0, 20)}`);
      } catch (err) {
        this.refuse(link, `${kind}: ${err.message}`);
      }
    };
    link.queue = link.queue.then(run);
    return link.queue;
  }

  /** Send a frame (tagged with its room by the caller) to `device`; false if its channel is
   * not open.
   * @param {string} device
   * @param {string} text
   */
  send(device, text) {
    this.checkSize(text);
    const link = this.links.get(device);
    return Boolean(link && this.keepalive.sendOn(link, text));
  }

  /**
   * Wait until `device`'s channel has room for more (or is gone); false if it is gone.
   * @param {string} device
   */
  async drained(device) {
    const link = this.links.get(device);
    const channel = link && link.channel;
    if (!channel || channel.readyState !== "open") return false;
    if (channel.bufferedAmount < HIGH_WATER) return true;
    channel.bufferedAmountLowThreshold = HIGH_WATER / 4;
    await /** @type {Promise<void>} */ (new Promise((resolve) => {
      const finish = () => {
        channel.removeEventListener("bufferedamountlow", finish);
        channel.removeEventListener("close", finish);
        resolve();
      };
      channel.addEventListener("bufferedamountlow", finish);
      channel.addEventListener("close", finish);
    }));
    return channel.readyState === "open";
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.negotiation.dropSpares();
    for (const device of [...this.links.keys()]) this.closeLink(device);
    this.roster.clear();
  }

  /**
   * @param {string} text
   */
  checkSize(text) {
    const size = text.length > MAX_FRAME_BYTES ? text.length : utf8Size(text);
    if (size > MAX_FRAME_BYTES) {
      throw new ProtocolError(`frame is too large: at most ${MAX_FRAME_BYTES} bytes allowed`);
    }
  }

  // -- links ------------------------------------------------------------------------------

  /**
   * @param {Peer} peer
   */
  openLink(peer) {
    const link = new Link(peer, this.device < peer.device);
    this.links.set(peer.device, link);
    timing.linkStep(peer.device, "listed");
    // The offer first: its set-up is on the way to the link, the listeners' work is not.
    if (link.offerer) this.negotiation.offer(link);
    this.notify(link);
  }

  /**
   * @param {string} device
   */
  closeLink(device) {
    this.roster.delete(device);
    const link = this.links.get(device);
    if (!link) return;
    this.links.delete(device);
    this.dropConnection(link);
    this.setState(link, LinkState.CLOSED);
  }

  /**
   * @param {Link} link
   * @param {string} reason
   */
  fail(link, reason) {
    if (this.closed || this.links.get(link.peer.device) !== link) return;
    if (link.state === LinkState.FAILED && !link.pc) return;
    this.log.info(`link to ${short(link.peer.device)} failed: ${reason}`);
    timing.linkStep(link.peer.device, "failed");
    this.dropConnection(link);
    link.failures++;
    this.setState(link, LinkState.FAILED);
    if (link.offerer) {
      const delay = Math.min(this.retryMax, this.retryBase * 2 ** Math.max(0, link.failures - 1));
      this.later(link, () => {
        if (this.links.get(link.peer.device) === link && link.state === LinkState.FAILED) {
          this.negotiation.offer(link);
        }
      }, delay + Math.random() * delay / 4);
    }
  }

  /**
   * @param {Link} link
   * @param {() => void} fn
   * @param {number} ms
   */
  later(link, fn, ms) {
    const timer = setTimeout(() => { link.timers.delete(timer); fn(); }, ms);
    link.timers.add(timer);
    return timer;
  }

  /**
   * @param {Link} link
   */
  dropConnection(link) {
    for (const timer of link.timers) { clearTimeout(timer); clearInterval(timer); }
    link.timers.clear();
    const pc = link.pc;
    link.pc = null;
    link.channel = null;
    link.awaitingAnswer = false;
    link.descriptionSent = false;
    link.localCandidates = [];
    link.path = null;
    if (pc) {
      try { closeConnection(pc); } catch (err) { this.log.debug("closing a connection failed", err); }
    }
  }

  /**
   * @param {Link} link
   * @param {string} state
   */
  setState(link, state) {
    if (link.state === state) return;
    link.state = state;
    this.notify(link);
  }

  /**
   * @param {Link} link
   */
  notify(link) {
    try {
      this.onLink(link.peer, link.state);
    } catch (err) {
      this.log.error("onLink callback failed", err);
    }
  }

  /**
   * @param {Link | null} link
   * @param {string} reason
   */
  refuse(link, reason) {
    this.refused++;
    this.log.warn(`signal refused: ${reason}`);
    if (link && link.state !== LinkState.CONNECTED) this.fail(link, `refused a signal: ${reason}`);
  }
}
