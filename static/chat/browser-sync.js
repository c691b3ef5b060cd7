// @ts-check
// Delivery that needs no particular link, in the browser: the catch-up rules' effects
// (protocol/catchup.js CatchUp: digests, pulls, a read of the server) carried out and their
// clock run, and the answers to a peer's pull, in bounded batches. The JavaScript twin of the
// catch-up loop in peer_agent/agent.py and of peer_agent/sync_streams.py.
//
// `Sync` is a part of the room (browser-peer.js), kept in its own module: it reads and calls
// the rest of the room through `this.peer`.

import { envelopeId } from "./protocol/envelope.js";
import { MAX_BATCH } from "./protocol/limits.js";
import { batchesFor, digestFrame, vectorFrame } from "./protocol/sync.js";
import { vectorDigest } from "./protocol/vector.js";

// How many batches of a peer's pull one read of the log brings in.
const READ_BATCHES = 10;

/** @typedef {import("./protocol/envelope.js").Envelope} Envelope */
/** @typedef {import("./browser-peer.js").BrowserPeer} BrowserPeer */

/** The catch-up rules' clock, in seconds (protocol/catchup.js CatchUp). */
export function nowSeconds() {
  return performance.now() / 1000;
}

/** The room's catch-up: what the rules decide, done, and what a peer pulls, sent. */
export class Sync {
  /**
   * @param {BrowserPeer} peer
   */
  constructor(peer) {
    this.peer = peer;
    /** @type {ReturnType<typeof setTimeout> | null} the timer of the rules' next turn */
    this.catchupTimer = null;
  }

  /**
   * Carry out what the catch-up rules decided: digests, pulls, a read of the server.
   * @param {import("./protocol/catchup.js").CatchUpEffect[]} effects
   */
  async apply(effects) {
    let digest = null;
    for (const effect of effects) {
      if (effect.kind === "digest") {
        digest = digest || await vectorDigest(this.peer.store.vector());
        this.peer.mesh.send(effect.device, digestFrame(digest));
      } else if (effect.kind === "pull") {
        this.peer.mesh.send(effect.device, vectorFrame(this.peer.store.vector()));
      } else if (effect.kind === "pull_server") {
        this.pullFromServer().catch((err) => this.peer.log.error("reading the server failed", err));
      }
    }
  }

  async pullFromServer() {
    try {
      await this.peer.roomServer.catchUpFromServer();
    } finally {
      this.peer.catchup.serverPullEnded();
      this.wakeCatchUp();
    }
  }

  /** Run the catch-up rules' clock now, then again when the next thing is due. */
  wakeCatchUp() {
    if (this.peer.closed) return;
    if (this.catchupTimer !== null) clearTimeout(this.catchupTimer);
    this.catchupTimer = setTimeout(() => this.catchUpTurn(), 0);
  }

  async catchUpTurn() {
    this.catchupTimer = null;
    try {
      await this.apply(this.peer.catchup.due(nowSeconds(), this.peer.store.vector(), this.peer.server.joined));
    } catch (err) {
      this.peer.log.error("catching up failed", err);
    }
    const next = this.peer.catchup.nextDue();
    if (next !== null && this.catchupTimer === null) {
      this.catchupTimer = setTimeout(() => this.catchUpTurn(),
        Math.max(0, (next - nowSeconds()) * 1000));
    }
  }

  /**
   * Fresh messages arrived: linked peers that may lack them get our digest soon.
   * @param {string | null} source the device they came from, or null for the server
   * @param {Envelope[]} fresh
   */
  noteFresh(source, fresh) {
    if (!fresh.length) return;
    const reports = new Map();
    for (const [device, links] of this.peer.reported) {
      reports.set(device, new Set(links.filter((l) => l.state === "connected").map((l) => l.device)));
    }
    this.peer.catchup.fresh(source, new Set(fresh.map((e) => e.device)), reports, nowSeconds());
    this.wakeCatchUp();
  }

  /** Send a peer everything its vector says it lacks, in bounded batches; the last batch
   * says more: false.
   * @param {string} device
   * @param {Map<string, number>} vector
   */
  async sendMissing(device, vector) {
    const user = this.peer.peerName(device);
    // Read from the log READ_BATCHES batches at a time, sent one batch at a time.
    for await (const page of this.peer.store.missingPages(vector, READ_BATCHES * MAX_BATCH)) {
      for (let start = 0; start < page.length; start += MAX_BATCH) {
        const batch = page.slice(start, start + MAX_BATCH);
        for (const frame of batchesFor(batch, true)) {
          if (!(await this.peer.mesh.drained(device)) || !this.peer.mesh.send(device, frame)) return;
        }
        for (const env of batch) {
          this.peer.record(envelopeId(env), "sent", `sent to ${user} by anti-entropy (sync batch)`,
            { via: "sync", peers: [{ user, device }] });
        }
      }
    }
    for (const frame of batchesFor([], false)) this.peer.mesh.send(device, frame);
  }
}
