// @ts-check
// The data channel of a link of the browser's mesh (browser-mesh.js), and how the mesh knows
// it still works: ping and pong. The JavaScript twin of peer_agent/keepalive.py; it keeps the
// same rules, so both kinds of peer interoperate:
//
// - Every 2 s each side pings ({"t":"ping","n","at"}) and answers pings with pongs. A link
//   with no pong for 6 s is "disconnected": kept and pinged (only pings and pongs go on it),
//   and the first pong makes it "connected" again; 10 s later still silent, it has failed and
//   is offered afresh (protocol/link_rules.py).
// - Each open link's path is read from getStats(): the selected candidate pair's candidate
//   types and addresses.
//
// `Keepalive` is a part of the Mesh, kept in its own module: it reads and calls the rest of
// the mesh through `this.mesh`.

import { pathKind } from "./protocol/links.js";
import { JsonNumber, parseFrame } from "./protocol/strict-json.js";
import { timing } from "./timing.js";
import { LinkState, short } from "./browser-link.js";

/** @typedef {import("./browser-link.js").Link} Link */
/** @typedef {import("./browser-mesh.js").Mesh} Mesh */

const CONTROL_FRAME_MAX_CHARS = 256;

/** The data channel side of the mesh: open, receive, send, ping and pong. */
export class Keepalive {
  /**
   * @param {Mesh} mesh
   * @param {object} options
   * @param {number} options.pingInterval
   * @param {number} options.pingTimeout
   * @param {number} options.recoverGrace
   */
  constructor(mesh, { pingInterval, pingTimeout, recoverGrace }) {
    this.mesh = mesh;
    this.pingInterval = pingInterval;
    this.pingTimeout = pingTimeout;
    this.recoverGrace = recoverGrace;
  }

  /**
   * @param {Link} link
   * @param {RTCDataChannel} channel
   */
  attachChannel(link, channel) {
    link.channel = channel;
    channel.addEventListener("open", () => this.channelOpened(link, channel));
    channel.addEventListener("close", () => {
      if (link.channel === channel) this.mesh.fail(link, "data channel closed");
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
        this.mesh.fail(link, `no pong for ${(this.pingTimeout + this.recoverGrace) / 1000} s`);
        return;
      }
      if (silent > this.pingTimeout && link.state === LinkState.CONNECTED) {
        this.mesh.log.info(`link to ${short(link.peer.device)} disconnected: no pong for `
          + `${this.pingTimeout / 1000} s`);
        this.mesh.setState(link, LinkState.DISCONNECTED);
        if (link.offerer && link.peerRestarts) this.mesh.negotiation.restartIce(link, link.pc);
      }
      link.pingN++;
      link.pingSentAt = performance.now();
      this.sendOn(link, `{"t":"ping","n":${link.pingN},"at":${(link.pingSentAt / 1000).toFixed(6)}}`,
        true);
      this.readPath(link, link.pc);
    };
    link.timers.add(setInterval(ping, this.pingInterval));
    this.mesh.log.info(
      `link to ${short(link.peer.device)} open in ${Math.round(link.connectMs)} ms`);
    this.mesh.setState(link, LinkState.CONNECTED);
    ping();
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
      this.mesh.log.debug("no path to read", err);
    }
    if (JSON.stringify(path) === JSON.stringify(link.path)) return;
    link.path = path;
    try {
      this.mesh.onPath(link.peer);
    } catch (err) {
      this.mesh.log.error("onPath callback failed", err);
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
      this.mesh.onFrame(link.peer, data);
    } catch (err) {
      this.mesh.log.error("onFrame callback failed", err);
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
      this.mesh.log.info(`link to ${short(link.peer.device)} recovered`);
      this.mesh.setState(link, LinkState.CONNECTED);
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
      this.mesh.log.warn(`could not send to ${short(link.peer.device)}: ${err.message}`);
      return false;
    }
  }
}
