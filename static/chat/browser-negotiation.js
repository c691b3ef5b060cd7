// @ts-check
// How the browser's mesh (browser-mesh.js) makes a connection: offer, answer and trickled
// candidates, each signed. The JavaScript twin of peer_agent/negotiation.py; it keeps the same
// rules, so both kinds of peer interoperate:
//
// - Signals go through a room both devices are in: the offerer picks the first room it shares
//   with the other device (`roomFor`), signs the offer for that room and sends it there; the
//   answerer signs its answer for the room the offer came through and answers there.
// - An offer that meets no answer within `answerTimeout` (doubling with each unanswered offer,
//   up to the connect time-out) is made again at once: an offer can be lost to a peer that was
//   not yet listening, and waiting out the whole connect time-out would stall the pair for
//   seconds.
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
// - ICE restart, between browsers only: each browser's offer and answer say `ice_restart:
//   true`. When a link to a peer that said so goes disconnected, its offering side restarts
//   ICE on the same connection (`restartIce()`, an offer with `restart: true`) and the other
//   side answers on its connection instead of replacing it. aiortc 1.16 cannot restart ICE
//   (aiortc issue #211), so a link to an agent gets a fresh connection once it has failed.
//
// `Negotiation` is a part of the Mesh, kept in its own module: it reads and calls the rest of
// the mesh through `this.mesh`.

import { BadSignature, ProtocolError } from "./protocol/errors.js";
import { fingerprintSignedBytes, sdpFingerprint } from "./protocol/fingerprint.js";
import { b64decode, b64encode, sign, verifySignature } from "./protocol/keys.js";
import { timing } from "./timing.js";
import { CHANNEL_LABEL, LinkState, offerId, orClosed, short } from "./browser-link.js";

/** @typedef {import("./browser-link.js").Link} Link */
/** @typedef {import("./browser-mesh.js").Mesh} Mesh */

// How long after a spare offer is taken the next is made.
const SPARE_REFILL_MS = 1000;

/**
 * A connection with its channel and its offer set locally, waiting for a peer to offer to.
 * @typedef {{pc: RTCPeerConnection, channel: RTCDataChannel, made: number, iceServers: string}} Spare
 */

/** The offer, answer and candidate side of the mesh, and its offers made ahead. */
export class Negotiation {
  /**
   * @param {Mesh} mesh
   * @param {object} options
   * @param {number} options.connectTimeout
   * @param {number} options.answerTimeout
   * @param {number} options.spareOffers offers made ahead (0: none)
   * @param {number} options.spareMaxAge ms a spare offer is kept
   */
  constructor(mesh, { connectTimeout, answerTimeout, spareOffers, spareMaxAge }) {
    this.mesh = mesh;
    this.connectTimeout = connectTimeout;
    this.answerTimeout = answerTimeout;
    this.lastOid = 0;
    this.spareOffers = spareOffers;
    this.spareMaxAge = spareMaxAge;
    /** @type {Spare[]} */
    this.spares = [];
    this.sparesMaking = 0;
  }

  // -- offers made ahead -----------------------------------------------------------------

  /** Drop the spares made with other ICE servers than the mesh's (just set); make more. */
  iceServersChanged() {
    const wanted = JSON.stringify(this.mesh.iceServers);
    for (const spare of this.spares.filter((s) => s.iceServers !== wanted)) this.dropSpare(spare);
    this.makeSpares();
  }

  /** Drop every spare (the mesh closes). */
  dropSpares() {
    for (const spare of [...this.spares]) this.dropSpare(spare);
  }

  /** Make spare offers until there are `spareOffers` of them (made or under way). */
  makeSpares() {
    while (!this.mesh.closed && this.spares.length + this.sparesMaking < this.spareOffers) {
      this.sparesMaking++;
      this.makeSpare().finally(() => { this.sparesMaking--; });
    }
  }

  async makeSpare() {
    const iceServers = JSON.stringify(this.mesh.iceServers);
    const pc = new RTCPeerConnection({ iceServers: this.mesh.iceServers });
    const channel = pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
    try {
      await pc.setLocalDescription();
    } catch (err) {
      this.mesh.log.debug("could not make an offer ahead", err);
      pc.close();
      return;
    }
    if (this.mesh.closed || iceServers !== JSON.stringify(this.mesh.iceServers)) {
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
    const wanted = JSON.stringify(this.mesh.iceServers);
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
    const pc = made || new RTCPeerConnection({ iceServers: this.mesh.iceServers });
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
        this.mesh.fail(link, `peer connection ${pc.connectionState}`);
      }
    });
    pc.addEventListener("datachannel", (event) => {
      if (link.pc !== pc) return;
      if (event.channel.label !== CHANNEL_LABEL || link.channel) {
        this.mesh.log.warn(`ignoring extra data channel from ${short(link.peer.device)}`);
        return;
      }
      this.mesh.keepalive.attachChannel(link, event.channel);
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
    this.mesh.later(link, () => {
      if (link.pc === pc && link.state === LinkState.CONNECTING) {
        this.mesh.fail(link, `no open channel after ${this.connectTimeout / 1000} s`);
      }
    }, this.connectTimeout);
    return pc;
  }

  /**
   * @param {Link} link
   */
  async offer(link) {
    this.mesh.dropConnection(link);
    this.mesh.setState(link, LinkState.CONNECTING);
    timing.linkStep(link.peer.device, "offer begun");
    const spare = this.takeSpare();
    const pc = this.newConnection(link, spare ? spare.pc : undefined);
    try {
      if (spare) {
        this.mesh.keepalive.attachChannel(link, spare.channel);
      } else {
        this.mesh.keepalive.attachChannel(link,
          pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
        await orClosed(pc, pc.setLocalDescription());
      }
      timing.linkStep(link.peer.device, "offer set locally");
      if (spare) timing.linkStep(link.peer.device, "offer made ahead");
      if (link.pc !== pc) return;
      link.awaitingAnswer = true;
      link.offerOid = this.nextOid();
      link.signalRoom = this.mesh.roomFor(link.peer.device);
      await this.sendDescription(link, pc, "offer", false, link.offerOid);
      if (link.pc !== pc) return;
      const wait = Math.min(this.connectTimeout, this.answerTimeout * 2 ** link.unanswered);
      this.mesh.later(link, () => {
        if (link.pc === pc && link.awaitingAnswer
            && this.mesh.links.get(link.peer.device) === link) {
          link.unanswered++;
          timing.linkStep(link.peer.device, "no answer: offering again");
          this.mesh.log.info(
            `no answer from ${short(link.peer.device)} in ${wait} ms: offering again`);
          this.offer(link);
        }
      }, wait);
    } catch (err) {
      if (link.pc === pc) this.mesh.fail(link, `could not send an offer: ${err.message}`);
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
      this.mesh.log.info(
        `offer ${oid} from ${short(link.peer.device)} is older than one taken; ignored`);
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
    this.mesh.dropConnection(link);
    this.mesh.setState(link, LinkState.CONNECTING);
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
      if (link.pc === pc) this.mesh.fail(link, `could not send an answer: ${err.message}`);
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
      this.mesh.log.info(`answer from ${short(link.peer.device)} to an earlier offer; ignored`);
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
      this.mesh.log.warn(`malformed candidate from ${short(link.peer.device)}; ignored`);
      return;
    }
    try {
      await orClosed(pc, pc.addIceCandidate({ candidate, sdpMid, sdpMLineIndex }));
      timing.linkStep(link.peer.device, "remote candidate added");
    } catch (err) {
      if (link.pc === pc) {
        this.mesh.log.warn(`candidate from ${short(link.peer.device)} not added: ${err.message}`);
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
    const signed = fingerprintSignedBytes(this.linkRoom(link), this.mesh.device, link.peer.device,
      fingerprint);
    const fpSig = b64encode(await sign(this.mesh.key.privateKey, signed));
    if (link.pc !== pc) return;
    /** @type {Record<string, unknown>} */
    const payload = { sdp: description.sdp, type: description.type, fp_sig: fpSig,
                      ice_restart: true };
    if (restart) payload.restart = true;
    if (oid !== null) payload.oid = oid;
    timing.linkStep(link.peer.device, `${kind} signed`);
    await this.mesh.sendSignal(this.linkRoom(link), link.peer.device, kind, payload);
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
    return link.signalRoom || this.mesh.roomFor(link.peer.device);
  }

  /**
   * @param {Link} link
   * @param {string} kind
   * @param {object} payload
   */
  signal(link, kind, payload) {
    this.mesh.sendSignal(this.linkRoom(link), link.peer.device, kind, payload).catch((err) => {
      this.mesh.log.warn(`${kind} to ${short(link.peer.device)} not sent: ${err.message}`);
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
        fingerprintSignedBytes(room, link.peer.device, this.mesh.device, fingerprint));
    } catch (err) {
      throw new BadSignature(`${kind} from ${short(link.peer.device)} has no valid `
        + `fingerprint signature: ${err.message}`);
    }
    return sdp;
  }

  /**
   * Restart ICE on the live connection (the offering side, to a browser that can).
   * @param {Link} link
   * @param {RTCPeerConnection | null} pc
   */
  async restartIce(link, pc) {
    if (!pc || link.pc !== pc || pc.signalingState !== "stable") return;
    link.restarts++;
    this.mesh.log.info(`restarting ICE with ${short(link.peer.device)}`);
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
      this.mesh.log.warn(`ICE restart with ${short(link.peer.device)} failed: ${err.message}`);
    }
  }
}
