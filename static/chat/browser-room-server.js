// @ts-check
// One room's server side, in the browser: the room as the server sees it (join, roster,
// signals, `stored` notices), the keys it hands out, the room's history read from it, and the
// uploads of what it lacks. The JavaScript twin of peer_agent/room_server.py and
// peer_agent/outbox.py.
//
// `RoomServer` is a part of the room (browser-peer.js), kept in its own module: it reads and
// calls the rest of the room through `this.peer`.

import { short } from "./browser-link.js";
import { OTHERS_GRACE_MS } from "./browser-log.js";
import { LinkState } from "./browser-mesh.js";
import { nowSeconds } from "./browser-sync.js";
import { envelopeId, envelopeToObject } from "./protocol/envelope.js";
import { keyMatchesDevice } from "./protocol/keys.js";
import { MAX_BATCH } from "./protocol/limits.js";
import { timing } from "./timing.js";

/** @typedef {import("./browser-peer.js").BrowserPeer} BrowserPeer */

// Upload batches stay well under the server's 1 MiB Socket.IO message limit.
const UPLOAD_MAX_BYTES = 256 * 1024;
// Refusals a retry cannot fix: the message leaves the outbox (peer_agent/outbox.py PERMANENT).
const PERMANENT = new Set(["invalid_envelope", "bad_signature", "unknown_author", "conflict"]);

/** The room's server side: join, roster, signals, stored notices, keys, history, uploads. */
export class RoomServer {
  /**
   * @param {BrowserPeer} peer
   */
  constructor(peer) {
    this.peer = peer;
    this.keyRefresh = null;
    this.uploading = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.graceTimer = null;
    /** @type {boolean | null} null until the server link first comes up or fails */
    this.serverUp = null;
  }

  /**
   * @param {boolean} up
   */
  onServerLink(up) {
    if (up !== this.serverUp) {
      const text = up ? (this.serverUp === null ? "server link up" : "server back: link up")
        : (this.serverUp ? "server lost" : "cannot reach the server");
      this.peer.addEvent("server", text, { state: up ? "connected" : "down" });
      this.serverUp = up;
      if (this.peer.owner) this.peer.owner.pushRooms();
    }
    this.peer.pushState();
    if (this.peer.server.joined) this.flushOutbox();
  }

  /**
   * @param {any} reply the server's join reply
   * @param {number} generation
   */
  async onJoined(reply, generation) {
    if (typeof reply.kind === "string") this.peer.kind = reply.kind;
    this.peer.members = Array.isArray(reply.members) ? reply.members.map(String) : null;
    if (this.peer.owner) this.peer.owner.pushRooms();
    for (const peer of reply.peers || []) timing.linkStep(String(peer.device), "join reply");
    this.peer.mesh.setIceServers(Array.isArray(reply.ice_servers) ? reply.ice_servers : []);
    // Checked side by side: each check waits on WebCrypto, and the links wait on all.
    /** @type {any[]} untrusted: from the server */
    const peers = Array.isArray(reply.peers) ? reply.peers : [];
    const vouched = await Promise.all(peers.map((peer) => this.vouchedPeer(peer)));
    const listed = peers.filter((_, i) => vouched[i]);
    // Merged, not rebuilt: a peer_joined or an offer that came while the join ran is newer
    // than this snapshot. A peer whose channel is still open stays even if the (just
    // restarted) server does not list it yet.
    const linked = new Set([...this.peer.mesh.links.values()]
      .filter((l) => l.state === LinkState.CONNECTED).map((l) => l.peer.device));
    this.peer.rosterRule.snapshot(listed, generation, linked);
    this.peer.present = new Set(listed.map((p) => p.device).filter((d) => this.peer.rosterRule.has(d)));
    this.syncRoster();
    // Offer at once to every listed peer not linked yet (this side offers to those with a
    // larger id), rather than when a retry's backoff ends: after a rejoin the links that
    // failed meanwhile would otherwise wait for their timers.
    for (const device of this.peer.roster.keys()) this.peer.mesh.nudge(device);
    this.peer.rostered();
    this.peer.pushState();
    await this.refreshKeys();
    await this.catchUpFromServer();
    this.flushOutbox();
  }

  /**
   * Whether a roster entry from the server is sound (its id is its key's); remembers the key.
   * @param {any} peer untrusted: from the server
   */
  async vouchedPeer(peer) {
    if (!peer || typeof peer.device !== "string" || peer.device === this.peer.key.device) return false;
    const known = this.peer.rosterRule.get(peer.device);
    if (known && known.public_key === peer.public_key && known.user === peer.user) return true;
    if (!(await keyMatchesDevice(peer.public_key, peer.device))) {
      this.peer.log.warn(`roster entry for ${peer.user} does not match its key; skipped`);
      return false;
    }
    await this.peer.store.rememberKey(peer.device, peer.user, peer.public_key, "server");
    return true;
  }

  /** Make the member list and the mesh match the merged roster. */
  syncRoster() {
    this.peer.roster = new Map([...this.peer.rosterRule.entries.values()].map((e) => [e.device,
      { user: e.user, device: e.device, public_key: e.public_key }]));
    this.peer.mesh.updateRoster(this.peer.roster.values());
    this.peer.checkSettled();
  }

  /**
   * @param {any} data untrusted: from the server
   */
  async onPeerJoined(data) {
    const peer = data.peer;
    timing.linkStep(String(peer && peer.device), "peer_joined");
    if (!(await this.vouchedPeer(peer))) return;
    const before = this.peer.rosterRule.get(peer.device);
    this.peer.rosterRule.joined(peer);
    const now = this.peer.rosterRule.get(peer.device);
    if (!now || now === before) return; // stale: that epoch already left, or a newer is known
    this.peer.present.add(peer.device);
    this.peer.addEvent("joined", `${peer.user} joined (device ${short(peer.device)})`,
      { user: peer.user, device: peer.device });
    this.syncRoster();
    // It may have restarted: offer now rather than when the retry backoff ends.
    this.peer.mesh.nudge(peer.device);
    this.peer.pushState();
  }

  /**
   * @param {any} data untrusted: from the server
   */
  onPeerLeft(data) {
    if (!this.peer.rosterRule.left(data.device, data.epoch) && this.peer.rosterRule.has(data.device)) {
      return; // an older presence of a device that has joined again since
    }
    const user = this.peer.peerName(data.device);
    this.peer.addEvent("left", `${user} left the server (device ${short(data.device)})`,
      { user, device: data.device });
    this.peer.present.delete(data.device);
    this.peer.reported.delete(data.device);
    this.peer.roster.delete(data.device);
    this.peer.mesh.peerLeft(data.device);
    this.peer.pushState();
  }

  /**
   * @param {any} data untrusted: from the server
   */
  async onSignal(data) {
    const sender = data.from || {};
    timing.linkStep(String(sender.device), `${data.kind} received`);
    // An offer can overtake the peer_joined that announces its sender; the server vouches
    // for the sender's key in the signal itself.
    const known = this.peer.rosterRule.get(sender.device);
    const newer = known && Number.isSafeInteger(sender.epoch) && known.epoch !== null
      && sender.epoch > known.epoch;
    if ((!known || newer) && sender.public_key && (await this.vouchedPeer(sender))) {
      if (this.peer.rosterRule.joined(sender) || !known) this.syncRoster();
    }
    await this.peer.mesh.handleSignal(String(sender.user || ""), String(sender.device || ""),
      String(data.kind), data.payload || {});
  }

  /**
   * @param {any} data untrusted: from the server
   */
  async onStored(data) {
    /** @type {Record<string, number>} id -> cursor */
    const ids = {};
    for (const m of data.messages || []) {
      if (m && typeof m.id === "string" && Number.isSafeInteger(m.cursor)) ids[m.id] = m.cursor;
    }
    this.peer.store.markOnServer(ids);
    for (const [id, cursor] of Object.entries(ids)) {
      this.peer.record(id, "on_server", `the server stored it at cursor ${cursor}`, { cursor });
    }
    this.onUploaded(Object.keys(ids));
    // Ids this page lacks are read from the server's history soon, unless a peer brings
    // them first.
    this.peer.catchup.serverNamed(Object.keys(ids), this.peer.store.vector(), nowSeconds());
    this.peer.sync.wakeCatchUp();
  }

  /**
   * @param {string[]} ids
   */
  onUploaded(ids) {
    for (const id of ids) {
      const d = this.peer.delivery.get(id) || { peers: new Set(), server: false };
      d.server = true;
      this.peer.delivery.set(id, d);
      this.peer.pushDelivery(id);
    }
    this.peer.pushState();
  }

  async refreshKeys() {
    try {
      for (const d of await this.peer.server.roomKeys()) {
        await this.peer.store.rememberKey(d.id, d.user, d.public_key, "server");
      }
    } catch (err) {
      this.peer.log.info(`could not refresh the room's keys: ${err.message}`);
    }
  }

  scheduleKeyRefresh() {
    if (!this.keyRefresh) {
      this.keyRefresh = this.refreshKeys().finally(() => { this.keyRefresh = null; });
    }
  }

  /** Read the server's history after the last cursor seen, verified like any message. */
  async catchUpFromServer() {
    let after = this.peer.store.cursor;
    for (;;) {
      let page;
      try {
        page = await this.peer.server.history(after);
      } catch (err) {
        this.peer.log.info(`history catch-up stopped: ${err.message}`);
        return;
      }
      const rows = page.messages || [];
      const good = [];
      /** @type {Record<string, number>} id -> cursor */
      const cursors = {};
      for (const row of rows) {
        /** @type {Record<string, unknown>} */
        const raw = {};
        for (const f of ["room", "author", "device", "seq", "lamport", "ts", "text", "sig"]) {
          raw[f] = row[f];
        }
        const env = await this.peer.receiving.verified(raw, "server");
        if (env) {
          good.push(env);
          cursors[envelopeId(env)] = row.cursor;
        }
      }
      const fresh = await this.peer.store.addMany(good, "server");
      for (const env of fresh) {
        const cursor = cursors[envelopeId(env)];
        this.peer.record(envelopeId(env), "received",
          `received via the server: read from its history (cursor ${cursor})`,
          { via: "server", cursor });
        this.peer.announce(env);
      }
      this.peer.sync.noteFresh(null, fresh);
      if (rows.length) {
        this.peer.addEvent("history", `history from the server: ${rows.length} messages, `
          + `${fresh.length} new`, { count: rows.length, fresh: fresh.length });
      }
      this.peer.store.markOnServer(cursors);
      const last = rows.length ? rows[rows.length - 1].cursor : after;
      await this.peer.store.setCursor(last);
      if (!rows.length || page.next === null || last === after) return;
      after = last;
    }
  }

  /** Another device's message came: upload what the server still lacks once its grace is
   * over (one timer for every message that comes meanwhile). */
  flushAfterGrace() {
    if (this.graceTimer !== null) return;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = null;
      this.flushOutbox();
    }, OTHERS_GRACE_MS + 50);
  }

  /** Upload what the server lacks, a bounded batch at a time, until it is all acknowledged. */
  async flushOutbox() {
    if (this.peer.closed || this.uploading || !this.peer.server.joined || !this.peer.store) return;
    this.uploading = true;
    try {
      for (;;) {
        const batch = [];
        let bytes = 0;
        for (const env of this.peer.store.outbox(MAX_BATCH)) {
          bytes += JSON.stringify(env).length * 3;
          if (batch.length && bytes > UPLOAD_MAX_BYTES) break;
          batch.push(env);
        }
        if (!batch.length) return;
        const t0 = timing.now();
        const results = await this.peer.server.publish(batch.map(envelopeToObject));
        timing.measure("background: upload to the server (its round trip)", t0);
        if (!results) return;
        /** @type {Record<string, number>} id -> cursor */
        const stored = {};
        /** @type {string[]} */
        const dropped = [];
        batch.forEach((env, i) => {
          const result = results[i] || {};
          const id = envelopeId(env);
          if (result.ok) stored[id] = result.cursor;
          else if (PERMANENT.has(result.error && result.error.code)) dropped.push(id);
        });
        this.peer.store.markOnServer(stored);
        const cursors = Object.values(stored);
        for (const [id, cursor] of Object.entries(stored)) {
          this.peer.record(id, "uploaded", `uploaded from here; the server stored it at cursor ${cursor}`,
            { cursor });
        }
        if (cursors.length) {
          const last = Math.max(...cursors);
          this.peer.addEvent("uploaded", `server stored ${cursors.length} message`
            + `${cursors.length === 1 ? "" : "s"} (up to cursor ${last})`,
            { count: cursors.length, cursor: last });
        }
        if (dropped.length) {
          this.peer.log.warn("the server refused for good", dropped);
          this.peer.store.dropFromOutbox(dropped);
        }
        this.onUploaded(Object.keys(stored));
        if (!Object.keys(stored).length && !dropped.length) return;
      }
    } finally {
      this.uploading = false;
    }
  }
}
