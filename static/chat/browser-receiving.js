// @ts-check
// Frames from the room's peers, in the browser, and the messages they bring: each peer's
// frames handled one at a time, in order; every envelope checked against the key vouched for
// its device before it is stored, shown or passed on; then the receipt, the word to other
// peers and the upload once IndexedDB holds it. The JavaScript twin of
// peer_agent/receiving.py (and of the frame handling in peer_agent/room_core.py).
//
// `Receiving` is a part of the room (browser-peer.js), kept in its own module: it reads and
// calls the rest of the room through `this.peer`.

import { nowSeconds } from "./browser-sync.js";
import { untagRoom } from "./protocol/channel.js";
import {
  checkLamportHorizon,
  envelopeFromObject,
  envelopeId,
  verifyEnvelope,
} from "./protocol/envelope.js";
import { ProtocolError } from "./protocol/errors.js";
import { keyMatchesDevice } from "./protocol/keys.js";
import { parseLinksFrame } from "./protocol/links.js";
import { encodeFrame, parseFrame } from "./protocol/strict-json.js";
import { syncFrameFromObject } from "./protocol/sync.js";
import { vectorDigest } from "./protocol/vector.js";
import { timing } from "./timing.js";

/** @typedef {import("./protocol/envelope.js").Envelope} Envelope */
/** @typedef {import("./browser-mesh.js").Peer} Peer */
/** @typedef {import("./browser-peer.js").BrowserPeer} BrowserPeer */

/**
 * How a message came, for its path: from its author, or passed on by another peer.
 * @param {Envelope} env
 * @param {Peer} peer
 * @param {boolean} live
 */
function receivedText(env, peer, live) {
  if (live) return `received from ${peer.user} live on the data channel`;
  if (env.device === peer.device) return `received from ${peer.user} by anti-entropy (sync batch)`;
  return `received via ${peer.user}: ${env.author}'s message, passed on by anti-entropy `
    + "(sync batch)";
}

/** The room's receive path: peers' frames, checked, stored, shown and acknowledged. */
export class Receiving {
  /**
   * @param {BrowserPeer} peer
   */
  constructor(peer) {
    this.peer = peer;
    /** @type {Map<string, Promise<void>>} device -> its frames being handled, in order */
    this.peerQueues = new Map();
  }

  /**
   * Handle a peer's frames one at a time, in order (checking signatures is asynchronous).
   * @param {Peer} peer
   * @param {unknown} frame the frame, parsed by the device
   */
  onFrame(peer, frame) {
    if (this.peer.closed) return;
    const queue = this.peerQueues.get(peer.device) || Promise.resolve();
    const next = queue.then(() => this.handleFrame(peer, frame)).catch((err) => {
      this.peer.log.error("handling a frame failed", err);
    });
    this.peerQueues.set(peer.device, next);
  }

  /**
   * @param {Peer} peer
   * @param {unknown} input the frame as text, or parsed
   */
  async handleFrame(peer, input) {
    let frame;
    try {
      const raw = untagRoom(typeof input === "string" ? parseFrame(input) : input, this.peer.room);
      if (raw && raw.t === "ack") {
        this.onAck(peer, raw);
        return;
      }
      if (raw && raw.t === "links") {
        this.peer.onLinksReport(peer, parseLinksFrame(raw));
        return;
      }
      frame = syncFrameFromObject(raw);
    } catch (err) {
      this.refuse(peer, err);
      return;
    }
    if (frame.t === "msg") await this.receive([frame.env], peer, true);
    else if (frame.t === "batch") {
      await this.receive(frame.envs, peer, false);
      if (!frame.more) await this.peer.sync.apply(this.peer.catchup.answerEnded(peer.device, nowSeconds()));
    } else if (frame.t === "vv") {
      await this.peer.sync.sendMissing(peer.device, frame.vector);
      await this.peer.sync.apply(this.peer.catchup.vectorReceived(peer.device, frame.vector,
        this.peer.store.vector(), nowSeconds()));
    } else if (frame.t === "vvd") {
      const ours = await vectorDigest(this.peer.store.vector());
      await this.peer.sync.apply(this.peer.catchup.digestReceived(peer.device, frame.digest, ours, nowSeconds()));
    } else if (frame.t === "keys") await this.learnKeys(peer, frame.devices);
  }

  /**
   * @param {Peer} peer
   * @param {any[]} devices
   */
  async learnKeys(peer, devices) {
    // As in Python, one key that is not its device's refuses the whole frame.
    for (const d of devices) {
      if (!(await keyMatchesDevice(d.public_key, d.id))) {
        this.refuse(peer, new ProtocolError(`keys frame: device ${d.id}: the public key `
          + "belongs to another device"));
        return;
      }
    }
    for (const d of devices) {
      if (!this.peer.store.keyFor(d.id)) {
        await this.peer.store.rememberKey(d.id, d.user, d.public_key, `peer:${peer.device}`);
      }
    }
  }

  /**
   * @param {Peer} peer
   * @param {Error & {code?: string}} err
   */
  refuse(peer, err) {
    const code = err.code || "error";
    this.peer.refused[code] = (this.peer.refused[code] || 0) + 1;
    this.peer.log.warn(`refused a frame from ${peer.user} (${peer.device}): ${err.message}`);
    const reason = `${code}: ${String(err.message).slice(0, 200)}`;
    this.peer.addEvent("refused", `refused a frame from ${peer.user}: ${reason}`,
      { user: peer.user, device: peer.device, reason });
  }

  /**
   * @param {Peer} peer
   * @param {any} raw untrusted: from the peer
   */
  onAck(peer, raw) {
    if (!Array.isArray(raw.ids)) return;
    for (const id of raw.ids.slice(0, 200)) {
      const d = typeof id === "string" ? this.peer.delivery.get(id) : null;
      if (d && !d.peers.has(peer.device)) {
        d.peers.add(peer.device);
        this.peer.record(id, "acked", `${peer.user} stored it (receipt)`,
          { user: peer.user, device: peer.device });
        this.peer.pushDelivery(id);
      }
    }
  }

  /**
   * An envelope checked against the key vouched for its device and author, or null.
   * @param {unknown} raw untrusted
   * @param {string} origin
   * @returns {Promise<Envelope | null>}
   */
  async verified(raw, origin) {
    try {
      const env = envelopeFromObject(raw);
      if (env.room !== this.peer.room) {
        throw new ProtocolError(`message for room ${env.room}, not ${this.peer.room}`);
      }
      const known = this.peer.store.keyFor(env.device);
      if (!known) {
        this.peer.roomServer.scheduleKeyRefresh();
        throw new ProtocolError(`unknown device ${env.device}; keys are being refreshed`,
          "unknown_device");
      }
      if (known.user !== env.author) {
        throw new ProtocolError(`device ${env.device} belongs to ${known.user}, `
          + `not ${env.author}`, "unknown_author");
      }
      await verifyEnvelope(env, known.public_key);
      checkLamportHorizon(env, Date.now());
      return env;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      const code = err.code || "error";
      this.peer.refused[code] = (this.peer.refused[code] || 0) + 1;
      this.peer.log.warn(`refused a message from ${origin}: ${err.message}`);
      const reason = `${code}: ${String(err.message).slice(0, 200)}`;
      this.peer.addEvent("refused", `refused a message from ${origin}: ${reason}`, { reason });
      return null;
    }
  }

  /**
   * @param {unknown[]} envs untrusted
   * @param {Peer} peer
   * @param {boolean} live
   */
  async receive(envs, peer, live) {
    const t0 = timing.now();
    /** @type {Envelope[]} */
    const good = [];
    for (const env of envs) {
      const t1 = timing.now();
      const checked = await this.verified(env, `peer ${peer.user}`);
      timing.measure("receive: verify (BrowserPeer.verified)", t1);
      if (checked) good.push(checked);
    }
    const fresh = await this.peer.store.addMany(good, `peer:${peer.device}`);
    if (live && fresh.length < good.length) {
      // A live message is sent once, by its author, on each channel: one held already was
      // replayed. Ignored (the log keeps one copy), and said.
      // fresh is a subset of good and shorter: some envelope of good is not in it.
      const replayed = /** @type {Envelope} */ (good.find((e) => !fresh.includes(e)));
      const held = envelopeId(replayed);
      this.peer.addEvent("refused", `ignored a replayed message from ${peer.user}: ${held} is `
        + "already held", { user: peer.user, device: peer.device,
          reason: `replayed: ${held} already held` });
    }
    const via = live ? "channel" : "sync";
    for (const env of fresh) {
      this.peer.record(envelopeId(env), "received", receivedText(env, peer, live),
        { via, user: peer.user, device: peer.device });
      this.peer.announce(env);
    }
    if (!live) {
      // An empty batch ends every exchange of version vectors: nothing was missing.
      this.peer.addEvent("sync", envs.length
        ? `sync batch from ${peer.user}: ${envs.length} messages, ${fresh.length} new`
        : `in sync with ${peer.user}: nothing missing`, { user: peer.user, device: peer.device, count: envs.length,
          fresh: fresh.length });
    }
    timing.measure("receive: verify, hold, draw (BrowserPeer.receive)", t0);
    // The receipt, the word to other peers and the upload wait until IndexedDB holds the
    // messages; the peer's next frames do not.
    const stored = this.peer.store.flushed();
    stored.then(() => this.afterStored(good, fresh, peer, live, t0), () => {})
      .catch((err) => this.peer.log.error("after storing received messages", err));
  }

  /**
   * What follows a received batch once IndexedDB holds it: the receipt to the sender, a
   * digest soon to peers that may lack it, the upload, a pull if a gap shows.
   * @param {Envelope[]} good
   * @param {Envelope[]} fresh
   * @param {Peer} peer
   * @param {boolean} live
   * @param {number} t0
   */
  async afterStored(good, fresh, peer, live, t0) {
    // The receipt names only the sender's own messages: the only ones its delivery marks
    // show (a sync batch also brings others'), as the agent does (peer_agent/room_core.py).
    const own = good.filter((env) => env.device === peer.device);
    if (own.length) {
      this.peer.mesh.send(peer.device, encodeFrame({ t: "ack", ids: own.map(envelopeId) }));
      timing.measure("receive: receipt sent after the commit", t0);
    }
    this.peer.sync.noteFresh(peer.device, fresh);
    if (fresh.length) this.peer.roomServer.flushAfterGrace();
    if (live && this.peer.store.hasGaps()) {
      // A gap: a message was missed; ask this peer for what we lack.
      await this.peer.sync.apply(this.peer.catchup.gapSeen(peer.device, nowSeconds()));
    }
  }
}
