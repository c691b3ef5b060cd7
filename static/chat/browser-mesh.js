// @ts-check
// The browser peer's WebRTC mesh: one RTCPeerConnection and one ordered, reliable data
// channel labelled "gibberish" per other device, Python agents and browsers alike, shared by
// every room the page and that device have in common (each room sees it through a RoomMesh,
// browser-room-mesh.js, which tags its frames with the room). It keeps the rules of
// peer_agent/mesh.py, so both kinds of peer interoperate:
//
// - Signals go through a room both devices are in: the offerer picks the first room it shares
//   with the other device (`roomFor`), signs the offer for that room and sends it there; the
//   answerer signs its answer for the room the offer came through and answers there.
//
// - Offer rule: of each pair of devices, the one with the smaller id offers; only it retries,
//   with exponential backoff and jitter, each time with a fresh connection. An offer that
//   meets no answer within `answerTimeout` (doubling with each unanswered offer, up to the
//   connect time-out) is made again at once: an offer can be lost to a peer that was not yet
//   listening, and waiting out the whole connect time-out would stall the pair for seconds.
// - Each offer carries `oid`, growing with every offer this page makes, and the answer echoes
//   it (docs/protocol.md, "Offer ids"): a late answer to an earlier offer is ignored rather
//   than torn into the newer connection, and an offer not newer than one taken is ignored.
// - Each offer or answer carries {sdp, type, fp_sig}: the sender's device-key signature of
//   canonical_bytes(FINGERPRINT_DOMAIN, [room, sender, receiver, fingerprint]). The receiver
//   checks it against the roster's key before it answers or accepts an answer, so a signaling
//   server in the middle cannot put its own DTLS certificate in between.
// - Browsers trickle candidates as {candidate, sdpMid, sdpMLineIndex}, always after the offer
//   or answer they belong to (aiortc never trickles: its SDP is complete).
// - Offers made ahead: the page keeps `spareOffers` connections whose offer is already set
//   locally and whose candidates are gathered, made when the mesh starts, on each join and
//   after one is used. An offer to a newly listed peer takes one, so it goes out at once,
//   its candidates inside its SDP, instead of after a createOffer, setLocalDescription and a
//   trickled candidate that the server relays one by one (each step slow on a loaded
//   machine, when several pages start at once). A spare is kept for `spareMaxAge` at most:
//   an older one may hold addresses that no longer work.
// - Every 2 s each side pings ({"t":"ping","n","at"}) and answers pings with pongs. A link
//   with no pong for 6 s is "disconnected": kept and pinged (only pings and pongs go on it),
//   and the first pong makes it "connected" again; 10 s later still silent, it has failed and
//   is offered afresh (protocol/link_rules.py).
// - ICE restart, between browsers only: each browser's offer and answer say `ice_restart:
//   true`. When a link to a peer that said so goes disconnected, its offering side restarts
//   ICE on the same connection (`restartIce()`, an offer with `restart: true`) and the other
//   side answers on its connection instead of replacing it. aiortc 1.16 cannot restart ICE
//   (aiortc issue #211), so a link to an agent gets a fresh connection once it has failed.
// - Each open link's path is read from getStats(): the selected candidate pair's candidate
//   types and addresses.

import {
  BadSignature,
  b64decode,
  b64encode,
  fingerprintSignedBytes,
  JsonNumber,
  MAX_FRAME_BYTES,
  parseFrame,
  pathKind,
  ProtocolError,
  sdpFingerprint,
  sign,
  utf8Size,
  verifySignature,
} from "./protocol.js";
import { timing } from "./timing.js";
import {
  CHANNEL_LABEL,
  closeConnection,
  Link,
  LinkState,
  offerId,
  orClosed,
  short,
} from "./browser-link.js";

// What the other modules take from here.
export { CHANNEL_LABEL, LinkState };
/** @typedef {import("./browser-link.js").Peer} Peer */

const CONTROL_FRAME_MAX_CHARS = 256;
// Above this much queued data a sender waits before adding more (Chromium closes a channel
// whose send buffer overflows).
const HIGH_WATER = 1 << 20;
// How long after a spare offer is taken the next is made.
const SPARE_REFILL_MS = 1000;

/**
 * A connection with its channel and its offer set locally, waiting for a peer to offer to.
 * @typedef {{pc: RTCPeerConnection, channel: RTCDataChannel, made: number, iceServers: string}} Spare
 */

/**
 * Peer connections to every other device of the page's rooms, kept open and healed.
 * `sendSignal(room, to, kind, payload)` goes through the server in that room; `roomFor(device)`
 * names the room to signal a device through; `onFrame(peer, text)` gets every text frame that
 * is not a ping or pong; `onLink(peer, state)` every link state change.
 */
export class Mesh {
  /**
   * @param {object} options
   * @param {import("./protocol.js").DeviceKey} options.key
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
    this.recoverGrace = recoverGrace;
    this.iceServers = iceServers;
    this.retryBase = retryBase;
    this.retryMax = retryMax;
    this.pingInterval = pingInterval;
    this.pingTimeout = pingTimeout;
    this.connectTimeout = connectTimeout;
    this.answerTimeout = answerTimeout;
    this.lastOid = 0;
    this.log = log;
    /** @type {Map<string, Peer>} */
    this.roster = new Map();
    /** @type {Map<string, Link>} */
    this.links = new Map();
    this.refused = 0;
    this.closed = false;
    this.spareOffers = spareOffers;
    this.spareMaxAge = spareMaxAge;
    /** @type {Spare[]} */
    this.spares = [];
    this.sparesMaking = 0;
    this.makeSpares();
  }

  /**
   * Use these ICE servers (the join reply's) from now on; spares made with others are dropped.
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    this.iceServers = iceServers;
    const wanted = JSON.stringify(iceServers);
    for (const spare of this.spares.filter((s) => s.iceServers !== wanted)) this.dropSpare(spare);
    this.makeSpares();
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
    this.offer(link);
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
        if (kind === "offer") await this.acceptOffer(link, payload, room);
        else if (kind === "answer") await this.acceptAnswer(link, payload, room);
        else if (kind === "candidate") await this.addCandidate(link, payload);
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
    return Boolean(link && this.sendOn(link, text));
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
    for (const spare of [...this.spares]) this.dropSpare(spare);
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
    if (link.offerer) this.offer(link);
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
          this.offer(link);
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

  // -- offers made ahead -----------------------------------------------------------------

  /** Make spare offers until there are `spareOffers` of them (made or under way). */
  makeSpares() {
    while (!this.closed && this.spares.length + this.sparesMaking < this.spareOffers) {
      this.sparesMaking++;
      this.makeSpare().finally(() => { this.sparesMaking--; });
    }
  }

  async makeSpare() {
    const iceServers = JSON.stringify(this.iceServers);
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const channel = pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
    try {
      await pc.setLocalDescription();
    } catch (err) {
      this.log.debug("could not make an offer ahead", err);
      pc.close();
      return;
    }
    if (this.closed || iceServers !== JSON.stringify(this.iceServers)) {
      pc.close();
      return;
    }
    /** @type {Spare} */
    const spare = { pc, channel, made: performance.now(), iceServers };
    this.spares.push(spare);
    // Dropped when too old, and not replaced until the next join or use.
    setTimeout(() => this.dropSpare(spare), this.spareMaxAge);
  }

  /** A spare offer still fit to send, taken out of the pool (more are made), or null. */
  takeSpare() {
    const wanted = JSON.stringify(this.iceServers);
    let spare;
    while ((spare = this.spares.shift())) {
      const fit = spare.iceServers === wanted && spare.pc.signalingState === "have-local-offer"
        && performance.now() - spare.made < this.spareMaxAge;
      if (fit) break;
      spare.pc.close();
    }
    // Later: making one costs CPU that the links being set up now need more.
    setTimeout(() => this.makeSpares(), SPARE_REFILL_MS);
    return spare || null;
  }

  /** @param {Spare} spare */
  dropSpare(spare) {
    const at = this.spares.indexOf(spare);
    if (at < 0) return;
    this.spares.splice(at, 1);
    spare.pc.close();
  }

  // -- offer and answer -------------------------------------------------------------------

  /**
   * @param {Link} link
   * @param {RTCPeerConnection} [made] a spare's connection, else a new one
   */
  newConnection(link, made) {
    // Only the servers the server hands out: never a public STUN default.
    const pc = made || new RTCPeerConnection({ iceServers: this.iceServers });
    link.pc = pc;
    link.attempts++;
    link.path = null;
    link.attemptStarted = performance.now();
    if (timing.on) {
      const device = link.peer.device;
      pc.addEventListener("iceconnectionstatechange", () => {
        timing.linkStep(device, `ice ${pc.iceConnectionState}`);
      });
      pc.addEventListener("icegatheringstatechange", () => {
        timing.linkStep(device, `gathering ${pc.iceGatheringState}`);
      });
      pc.addEventListener("connectionstatechange", () => {
        timing.linkStep(device, `connection ${pc.connectionState}`);
      });
    }
    pc.addEventListener("connectionstatechange", () => {
      if (link.pc === pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
        this.fail(link, `peer connection ${pc.connectionState}`);
      }
    });
    pc.addEventListener("datachannel", (event) => {
      if (link.pc !== pc) return;
      if (event.channel.label !== CHANNEL_LABEL || link.channel) {
        this.log.warn(`ignoring extra data channel from ${short(link.peer.device)}`);
        return;
      }
      this.attachChannel(link, event.channel);
    });
    pc.addEventListener("icecandidate", (event) => {
      const c = event.candidate;
      if (link.pc !== pc || !c || !c.candidate) return;
      const payload = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
      timing.linkStep(link.peer.device, "local candidate");
      // A candidate must not overtake its offer or answer: the other side would drop it.
      if (link.descriptionSent) this.signal(link, "candidate", payload);
      else link.localCandidates.push(payload);
    });
    this.later(link, () => {
      if (link.pc === pc && link.state === LinkState.CONNECTING) {
        this.fail(link, `no open channel after ${this.connectTimeout / 1000} s`);
      }
    }, this.connectTimeout);
    return pc;
  }

  /**
   * @param {Link} link
   */
  async offer(link) {
    this.dropConnection(link);
    this.setState(link, LinkState.CONNECTING);
    timing.linkStep(link.peer.device, "offer begun");
    const spare = this.takeSpare();
    const pc = this.newConnection(link, spare ? spare.pc : undefined);
    try {
      if (spare) {
        this.attachChannel(link, spare.channel);
      } else {
        this.attachChannel(link, pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
        await orClosed(pc, pc.setLocalDescription());
      }
      timing.linkStep(link.peer.device, "offer set locally");
      if (spare) timing.linkStep(link.peer.device, "offer made ahead");
      if (link.pc !== pc) return;
      link.awaitingAnswer = true;
      link.offerOid = this.nextOid();
      link.signalRoom = this.roomFor(link.peer.device);
      await this.sendDescription(link, pc, "offer", false, link.offerOid);
      if (link.pc !== pc) return;
      const wait = Math.min(this.connectTimeout, this.answerTimeout * 2 ** link.unanswered);
      this.later(link, () => {
        if (link.pc === pc && link.awaitingAnswer && this.links.get(link.peer.device) === link) {
          link.unanswered++;
          timing.linkStep(link.peer.device, "no answer: offering again");
          this.log.info(`no answer from ${short(link.peer.device)} in ${wait} ms: offering again`);
          this.offer(link);
        }
      }, wait);
    } catch (err) {
      if (link.pc === pc) this.fail(link, `could not send an offer: ${err.message}`);
    }
  }

  /**
   * @param {Link} link
   * @param {any} payload untrusted
   * @param {string} room the room it came through, which the answer goes through
   */
  async acceptOffer(link, payload, room) {
    if (link.offerer) {
      throw new ProtocolError(
        `offer from ${short(link.peer.device)}, which waits for our offer (offer rule)`);
    }
    const oid = offerId(payload);
    if (oid !== null && link.acceptedOid !== null && oid <= link.acceptedOid) {
      this.log.info(`offer ${oid} from ${short(link.peer.device)} is older than one taken; ignored`);
      return;
    }
    const sdp = await this.verifiedSdp(link, payload, "offer", room);
    timing.linkStep(link.peer.device, "offer verified");
    if (oid !== null) link.acceptedOid = oid;
    link.signalRoom = room;
    link.peerRestarts = payload.ice_restart === true;
    if (payload.restart === true && link.pc && link.channel
        && link.pc.signalingState === "stable") {
      // An ICE restart of the connection we have: answer on it, keep the channel.
      const pc = link.pc;
      link.restarts++;
      link.descriptionSent = false;
      try {
        await orClosed(pc, pc.setRemoteDescription({ type: "offer", sdp }));
        await orClosed(pc, pc.setLocalDescription(await orClosed(pc, pc.createAnswer())));
      } catch (err) {
        if (link.pc === pc) throw new ProtocolError(`ICE restart offer is unusable: ${err.message}`);
        return;
      }
      if (link.pc === pc) await this.sendDescription(link, pc, "answer", true, oid);
      return;
    }
    this.dropConnection(link);
    this.setState(link, LinkState.CONNECTING);
    const pc = this.newConnection(link);
    try {
      await orClosed(pc, pc.setRemoteDescription({ type: "offer", sdp }));
      // The answer made and set in one step: one trip to WebRTC's thread fewer.
      await orClosed(pc, pc.setLocalDescription());
      timing.linkStep(link.peer.device, "answer set locally");
    } catch (err) {
      if (link.pc === pc) throw new ProtocolError(`offer is unusable: ${err.message}`);
      return;
    }
    if (link.pc !== pc) return;
    try {
      await this.sendDescription(link, pc, "answer", false, oid);
    } catch (err) {
      if (link.pc === pc) this.fail(link, `could not send an answer: ${err.message}`);
    }
  }

  /**
   * @param {Link} link
   * @param {any} payload untrusted
   * @param {string} room the room it came through
   */
  async acceptAnswer(link, payload, room) {
    const pc = link.pc;
    const oid = offerId(payload);
    if (oid !== null && (oid !== link.offerOid || !link.awaitingAnswer)) {
      this.log.info(`answer from ${short(link.peer.device)} to an earlier offer; ignored`);
      return;
    }
    if (!link.awaitingAnswer || !pc) {
      throw new ProtocolError(`answer from ${short(link.peer.device)} with no offer pending`);
    }
    const sdp = await this.verifiedSdp(link, payload, "answer", room);
    timing.linkStep(link.peer.device, "answer verified");
    link.awaitingAnswer = false;
    link.unanswered = 0;
    link.peerRestarts = payload.ice_restart === true;
    try {
      await orClosed(pc, pc.setRemoteDescription({ type: "answer", sdp }));
    } catch (err) {
      if (link.pc === pc) throw new ProtocolError(`answer is unusable: ${err.message}`);
    }
  }

  /**
   * @param {Link} link
   * @param {any} payload untrusted
   */
  async addCandidate(link, payload) {
    const pc = link.pc;
    if (!pc || !pc.remoteDescription) return; // no negotiation under way: stale, ignored
    const { candidate, sdpMid, sdpMLineIndex } = payload || {};
    const indexOk = sdpMLineIndex === null || sdpMLineIndex === undefined
      || (Number.isInteger(sdpMLineIndex) && sdpMLineIndex >= 0);
    if (typeof candidate !== "string" || !indexOk
        || (sdpMid !== null && sdpMid !== undefined && typeof sdpMid !== "string")
        || (sdpMid == null && sdpMLineIndex == null)) {
      this.log.warn(`malformed candidate from ${short(link.peer.device)}; ignored`);
      return;
    }
    try {
      await orClosed(pc, pc.addIceCandidate({ candidate, sdpMid, sdpMLineIndex }));
      timing.linkStep(link.peer.device, "remote candidate added");
    } catch (err) {
      if (link.pc === pc) {
        this.log.warn(`candidate from ${short(link.peer.device)} not added: ${err.message}`);
      }
    }
  }

  /**
   * @param {Link} link
   * @param {RTCPeerConnection} pc
   * @param {string} kind
   * @param {boolean} [restart]
   * @param {number | null} [oid]
   */
  async sendDescription(link, pc, kind, restart = false, oid = null) {
    // Set: every caller awaited setLocalDescription first.
    const description = /** @type {RTCSessionDescription} */ (pc.localDescription);
    const fingerprint = sdpFingerprint(description.sdp);
    const signed = fingerprintSignedBytes(this.linkRoom(link), this.device, link.peer.device,
      fingerprint);
    const fpSig = b64encode(await sign(this.key.privateKey, signed));
    if (link.pc !== pc) return;
    /** @type {Record<string, unknown>} */
    const payload = { sdp: description.sdp, type: description.type, fp_sig: fpSig,
                      ice_restart: true };
    if (restart) payload.restart = true;
    if (oid !== null) payload.oid = oid;
    timing.linkStep(link.peer.device, `${kind} signed`);
    await this.sendSignal(this.linkRoom(link), link.peer.device, kind, payload);
    timing.linkStep(link.peer.device, `${kind} taken by the server`);
    if (link.pc !== pc) return;
    link.descriptionSent = true;
    const held = link.localCandidates;
    link.localCandidates = [];
    for (const candidate of held) this.signal(link, "candidate", candidate);
  }

  /** An offer id above every earlier one: wall-clock microseconds, kept increasing. */
  nextOid() {
    const now = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    this.lastOid = Math.min(Number.MAX_SAFE_INTEGER, Math.max(this.lastOid + 1, now));
    return this.lastOid;
  }

  /**
   * The room `link`'s signals go through: its offer's, else the first shared one now.
   * @param {Link} link
   */
  linkRoom(link) {
    return link.signalRoom || this.roomFor(link.peer.device);
  }

  /**
   * @param {Link} link
   * @param {string} kind
   * @param {object} payload
   */
  signal(link, kind, payload) {
    this.sendSignal(this.linkRoom(link), link.peer.device, kind, payload).catch((err) => {
      this.log.warn(`${kind} to ${short(link.peer.device)} not sent: ${err.message}`);
    });
  }

  /**
   * @param {Link} link
   * @param {any} payload untrusted
   * @param {string} kind
   * @param {string} room the room it came through, which its signature names
   */
  async verifiedSdp(link, payload, kind, room) {
    const { sdp, fp_sig: fpSig, type } = payload || {};
    if (typeof sdp !== "string" || typeof fpSig !== "string" || type !== kind) {
      throw new ProtocolError(`malformed ${kind} from ${short(link.peer.device)}`);
    }
    try {
      const fingerprint = sdpFingerprint(sdp);
      await verifySignature(link.peer.public_key, b64decode(fpSig),
        fingerprintSignedBytes(room, link.peer.device, this.device, fingerprint));
    } catch (err) {
      throw new BadSignature(`${kind} from ${short(link.peer.device)} has no valid `
        + `fingerprint signature: ${err.message}`);
    }
    return sdp;
  }

  // -- the data channel -------------------------------------------------------------------

  /**
   * @param {Link} link
   * @param {RTCDataChannel} channel
   */
  attachChannel(link, channel) {
    link.channel = channel;
    channel.addEventListener("open", () => this.channelOpened(link, channel));
    channel.addEventListener("close", () => {
      if (link.channel === channel) this.fail(link, "data channel closed");
    });
    channel.addEventListener("message", (event) => {
      if (link.channel === channel) this.received(link, event.data);
    });
    if (channel.readyState === "open") this.channelOpened(link, channel);
  }

  /**
   * @param {Link} link
   * @param {RTCDataChannel} channel
   */
  channelOpened(link, channel) {
    if (link.channel !== channel || link.state === LinkState.CONNECTED) return;
    timing.linkStep(link.peer.device, "channel open");
    const now = performance.now();
    link.connectMs = now - link.attemptStarted;
    link.failures = 0;
    link.unanswered = 0;
    link.awaitingAnswer = false;
    link.lastPong = now;
    for (const timer of link.timers) clearTimeout(timer);
    link.timers.clear();
    const ping = () => {
      if (link.channel !== channel) return;
      // The rules of protocol/link_rules.py (Liveness): disconnected, then failed.
      const silent = performance.now() - link.lastPong;
      if (silent > this.pingTimeout + this.recoverGrace) {
        this.fail(link, `no pong for ${(this.pingTimeout + this.recoverGrace) / 1000} s`);
        return;
      }
      if (silent > this.pingTimeout && link.state === LinkState.CONNECTED) {
        this.log.info(`link to ${short(link.peer.device)} disconnected: no pong for `
          + `${this.pingTimeout / 1000} s`);
        this.setState(link, LinkState.DISCONNECTED);
        if (link.offerer && link.peerRestarts) this.restartIce(link, link.pc);
      }
      link.pingN++;
      link.pingSentAt = performance.now();
      this.sendOn(link, `{"t":"ping","n":${link.pingN},"at":${(link.pingSentAt / 1000).toFixed(6)}}`,
        true);
      this.readPath(link, link.pc);
    };
    link.timers.add(setInterval(ping, this.pingInterval));
    this.log.info(`link to ${short(link.peer.device)} open in ${Math.round(link.connectMs)} ms`);
    this.setState(link, LinkState.CONNECTED);
    ping();
  }

  /**
   * Restart ICE on the live connection (the offering side, to a browser that can).
   * @param {Link} link
   * @param {RTCPeerConnection | null} pc
   */
  async restartIce(link, pc) {
    if (!pc || link.pc !== pc || pc.signalingState !== "stable") return;
    link.restarts++;
    this.log.info(`restarting ICE with ${short(link.peer.device)}`);
    try {
      // Candidates of the new ICE generation must not overtake the offer that announces it.
      link.descriptionSent = false;
      pc.restartIce();
      await orClosed(pc, pc.setLocalDescription(await orClosed(pc, pc.createOffer({ iceRestart: true }))));
      if (link.pc !== pc) return;
      link.awaitingAnswer = true;
      link.offerOid = this.nextOid();
      await this.sendDescription(link, pc, "offer", true, link.offerOid);
    } catch (err) {
      this.log.warn(`ICE restart with ${short(link.peer.device)} failed: ${err.message}`);
    }
  }

  /**
   * Read which way the link goes from the selected candidate pair; onPath when it changes.
   * @param {Link} link
   * @param {RTCPeerConnection | null} pc
   */
  async readPath(link, pc) {
    if (!pc) return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (link.pc !== pc) return;
    /** @type {any} set in forEach callbacks, which tsc's narrowing does not follow */
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = report.get(s.selectedCandidatePairId) || pair;
      }
    });
    if (!pair) {
      report.forEach((s) => {
        if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
      });
    }
    const local = pair && report.get(pair.localCandidateId);
    const remote = pair && report.get(pair.remoteCandidateId);
    let path = null;
    try {
      if (local && remote) {
        path = {
          kind: pathKind(local.candidateType, remote.candidateType),
          local: local.candidateType, remote: remote.candidateType,
          local_address: `${local.address || local.ip || "?"}:${local.port}`,
          remote_address: `${remote.address || remote.ip || "?"}:${remote.port}`,
        };
      }
    } catch (err) {
      this.log.debug("no path to read", err);
    }
    if (JSON.stringify(path) === JSON.stringify(link.path)) return;
    link.path = path;
    try {
      this.onPath(link.peer);
    } catch (err) {
      this.log.error("onPath callback failed", err);
    }
  }

  /**
   * @param {Link} link
   * @param {unknown} data
   */
  received(link, data) {
    if (typeof data !== "string") return; // binary frames are not part of the protocol
    if (data.length <= CONTROL_FRAME_MAX_CHARS && this.controlFrame(link, data)) return;
    try {
      this.onFrame(link.peer, data);
    } catch (err) {
      this.log.error("onFrame callback failed", err);
    }
  }

  /**
   * Handle a ping or pong; whether `text` was one.
   * @param {Link} link
   * @param {string} text
   */
  controlFrame(link, text) {
    let frame;
    try {
      frame = parseFrame(text);
    } catch {
      return false;
    }
    if (typeof frame !== "object" || frame === null || (frame.t !== "ping" && frame.t !== "pong")) {
      return false;
    }
    const { n, at } = frame;
    if (!Number.isSafeInteger(n) || !(typeof at === "number" || at instanceof JsonNumber)) {
      return true;
    }
    if (frame.t === "ping") {
      // Echo `at` exactly as sent: the pinger matches it against its own clock.
      const atText = at instanceof JsonNumber ? at.text : String(at);
      this.sendOn(link, `{"t":"pong","n":${n},"at":${atText}}`, true);
      return true;
    } else if (n === link.pingN) {
      const now = performance.now();
      link.rttMs = now - link.pingSentAt;
      link.lastPong = now;
    } else if (n > 0 && n < link.pingN) {
      link.lastPong = Math.max(link.lastPong, performance.now());
    } else {
      return true;
    }
    if (link.state === LinkState.DISCONNECTED) {
      this.log.info(`link to ${short(link.peer.device)} recovered`);
      this.setState(link, LinkState.CONNECTED);
      this.readPath(link, link.pc);
    }
    return true;
  }

  /**
   * Send on an open channel; pings and pongs (`control`) also go on a disconnected link.
   * @param {Link} link
   * @param {string} text
   * @param {boolean} [control]
   */
  sendOn(link, text, control = false) {
    const channel = link.channel;
    const usable = link.state === LinkState.CONNECTED
      || (control && link.state === LinkState.DISCONNECTED);
    if (!usable || !channel || channel.readyState !== "open") return false;
    try {
      channel.send(text);
      return true;
    } catch (err) {
      this.log.warn(`could not send to ${short(link.peer.device)}: ${err.message}`);
      return false;
    }
  }
}
