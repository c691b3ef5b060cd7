// @ts-check
// One room of the browser peer: in JavaScript, what peer_agent/agent.py does in Python. It
// wires the room's server link, its view of the page's mesh, its local log and the uploads
// together, and answers the chat UI for its room ({state(), messages(before), send(text),
// subscribe(onEvent)}, as the agent's JSON API does). The page's device (browser-device.js)
// holds the key, the IndexedDB database, the one Socket.IO connection and the one mesh that
// every room shares.
//
// Rules it keeps: a message is stored locally before it is shown or sent; every envelope
// received (from a peer or the server) is checked, against a key the server or a peer
// vouched for, before it is stored, shown or passed on; the server is told about every
// message it lacks, by whoever holds it.

import { BrowserLog, OTHERS_GRACE_MS } from "./browser-log.js";
import { LinkState } from "./browser-mesh.js";
import { RoomMesh } from "./browser-room-mesh.js";
import { ServerLink } from "./browser-server.js";
import { Roster } from "./roster.js";
import { timing } from "./timing.js";
/** @typedef {import("./protocol.js").Envelope} Envelope */
/** @typedef {import("./browser-mesh.js").Peer} Peer */
/**
 * What a room needs of the page's device (browser-device.js): the signed-in user, the key,
 * the database, the server connection and the mesh (through its RoomMesh), and word back
 * when the room list changes or the server drops the page from the room.
 * @typedef {import("./browser-room-mesh.js").MeshOwner & {
 *   user: string, key: import("./protocol.js").DeviceKey, db: IDBDatabase,
 *   server: import("./browser-server.js").ServerConnection,
 *   pushRooms(): void, removed(room: string): void,
 * }} RoomOwner
 */
import {
  batchesFor,
  CatchUp,
  checkLamportHorizon,
  digestFrame,
  envelopeFromObject,
  envelopeId,
  envelopeToObject,
  encodeFrame,
  keyMatchesDevice,
  keysFramesFor,
  linksFrame,
  MAX_BATCH,
  msgFrame,
  orderToken,
  parseFrame,
  untagRoom,
  parseLinksFrame,
  parseOrderToken,
  ProtocolError,
  syncFrameFromObject,
  vectorDigest,
  vectorFrame,
  verifyEnvelope,
} from "./protocol.js";

const PAGE = 50;
const MAX_PAGE = 200;
const UPLOAD_RETRY_MS = 2000;
// Upload batches stay well under the server's 1 MiB Socket.IO message limit.
const UPLOAD_MAX_BYTES = 256 * 1024;
// Refusals a retry cannot fix: the message leaves the outbox (peer_agent/outbox.py PERMANENT).
const PERMANENT = new Set(["invalid_envelope", "bad_signature", "unknown_author", "conflict"]);
// The network view's records (docs/network-view.md), kept in memory for the page's life.
const TIMELINE_SIZE = 500;
const PATHS_KEPT = 5000;
// How often the page tells its linked peers about its data channels (and on every change).
const LINKS_REPORT_MS = 5000;
const SERVER_STEPS = new Set(["uploaded", "on_server"]);

/**
 * @param {string} device
 */
function short(device) {
  return String(device).slice(0, 8);
}

/** The catch-up rules' clock, in seconds (protocol.js CatchUp). */
function nowSeconds() {
  return performance.now() / 1000;
}

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

export class BrowserPeer {
  /**
   * @param {{room: string, owner: RoomOwner | null, log?: Console}} options owner null: a
   *   room on its own, whose start() is not called (tests set its parts)
   */
  constructor({ room, owner, log = console }) {
    this.room = room;
    this.owner = owner;
    /** @type {string | null} the room's kind, as its join reply says (null until then) */
    this.kind = null;
    /** @type {string[] | null} a private or direct room's members (null: anyone) */
    this.members = null;
    this.closed = false;
    /** @type {ReturnType<typeof setInterval>[]} */
    this.intervals = [];
    this.log = log;
    /** @type {((event: object) => void)[]} */
    this.listeners = [];
    this.roster = new Map(); // device -> {user, device, public_key}
    this.delivery = new Map(); // own message id -> {peers: Set, server: bool}
    /** @type {Record<string, number>} refusal code -> count */
    this.refused = {};
    /** @type {Map<string, Promise<void>>} device -> its frames being handled, in order */
    this.peerQueues = new Map();
    this.keyRefresh = null;
    this.uploading = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.graceTimer = null;
    this.startedAt = Date.now();
    this.present = new Set(); // devices the server lists in the room
    /** @type {object[]} */
    this.timeline = [];
    this.eventSeq = 0;
    /** @type {Map<string, Record<string, any>[]>} id -> steps, the last PATHS_KEPT messages */
    this.paths = new Map();
    /** @type {boolean | null} null until the server link first comes up or fails */
    this.serverUp = null;
    /** @type {Map<string, string>} device -> link state */
    this.linkStates = new Map();
    /**
     * @type {Map<string, {device: string, state: string, rtt_ms: number | null}[]>} device ->
     *   the links that peer last reported of its own
     */
    this.reported = new Map();
    // What to pull, from whom and when (protocol.js CatchUp), and the timer of its next turn.
    this.catchup = new CatchUp();
    this.catchupTimer = null;
    // Set by start(), before the server link calls back or the UI asks for anything.
    /** @type {string} */
    this.user;
    /** @type {IDBDatabase} */
    this.db;
    /** @type {import("./protocol.js").DeviceKey} */
    this.key;
    /** @type {Roster} */
    this.rosterRule;
    /** @type {BrowserLog} */
    this.store;
    /** @type {RoomMesh} */
    this.mesh;
    this.server = new ServerLink({
      connection: owner ? owner.server : null, room, log,
      handlers: {
        peer_joined: (data) => this.onPeerJoined(data),
        peer_left: (data) => this.onPeerLeft(data),
        signal: (data) => this.onSignal(data),
        stored: (data) => this.onStored(data),
        removed: () => { if (this.owner) this.owner.removed(this.room); },
      },
      onJoining: () => this.rosterRule.beginJoin(),
      onJoined: (reply, generation) => this.onJoined(reply, generation),
      onLink: (up) => this.onServerLink(up),
      onRefused: (error) => this.addEvent("refused", `the server refused to join: ${error.message}`,
        { reason: `${error.code}: ${error.message}` }),
    });
  }

  /** Load the room's log (the device signed in and holds the key), then join the room. */
  async start() {
    const owner = /** @type {RoomOwner} */ (this.owner);
    this.user = owner.user;
    this.db = owner.db;
    this.key = owner.key;
    this.rosterRule = new Roster(this.key.device);
    this.store = new BrowserLog(this.db, this.room);
    await this.store.load(this.key.device);
    await this.store.rememberKey(this.key.device, this.user, this.key.publicKey, "self");
    this.mesh = new RoomMesh(owner, this.room, (peer, state) => this.onPeerLink(peer, state));
    this.addEvent("started", `${this.user}'s browser peer started in #${this.room}`);
    this.server.start();
    this.intervals.push(setInterval(() => this.flushOutbox(), UPLOAD_RETRY_MS),
      setInterval(() => this.reportLinks(), LINKS_REPORT_MS));
  }

  /** Leave the room: the server is told, the room's links close unless another room has
   * them, and nothing of the room runs any more. Its log stays in IndexedDB. */
  async leave() {
    this.closed = true;
    for (const timer of this.intervals) clearInterval(timer);
    if (this.catchupTimer !== null) clearTimeout(this.catchupTimer);
    if (this.graceTimer !== null) clearTimeout(this.graceTimer);
    this.listeners = [];
    if (this.mesh) this.mesh.close();
    await this.server.leave();
    if (this.store) await this.store.flushed().catch(() => {});
  }

  // -- the chat UI's backend ----------------------------------------------------------------

  /**
   * @param {(event: object) => void} listener
   */
  subscribe(listener) {
    this.listeners.push(listener);
  }

  /**
   * @param {object} event
   */
  emit(event) {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.log.error("a UI listener failed", err);
      }
    }
  }

  async state() {
    return this.currentState();
  }

  async events() {
    return { events: [...this.timeline] };
  }

  /**
   * @param {string} id
   */
  async path(id) {
    if (!this.store.get(id)) throw new Error("this device holds no such message");
    const steps = [...(this.paths.get(id) || [])].sort((a, b) => a.at - b.at);
    return { id, steps };
  }

  /**
   * @param {string} kind
   * @param {string} text
   * @param {object} [fields]
   */
  addEvent(kind, text, fields = {}) {
    this.eventSeq += 1;
    const event = { seq: this.eventSeq, at: Date.now(), kind, text, ...fields };
    this.timeline.push(event);
    if (this.timeline.length > TIMELINE_SIZE) this.timeline.shift();
    this.emit({ type: "event", event });
    return event;
  }

  /**
   * One step of a message's path; one server step per message, this device's upload wins.
   * @param {string} id
   * @param {string} what
   * @param {string} text
   * @param {object} [fields]
   */
  record(id, what, text, fields = {}) {
    let steps = this.paths.get(id);
    if (!steps) {
      steps = [];
      this.paths.set(id, steps);
      if (this.paths.size > PATHS_KEPT) {
        this.paths.delete(/** @type {string} */ (this.paths.keys().next().value));
      }
    }
    if (SERVER_STEPS.has(what)) {
      const i = steps.findIndex((s) => SERVER_STEPS.has(s.what));
      if (i >= 0) {
        if (what !== "uploaded" || steps[i].what === "uploaded") return;
        steps.splice(i, 1);
      }
    }
    steps.push({ at: Date.now(), what, text, ...fields });
  }

  /**
   * @param {string} device
   */
  peerName(device) {
    const peer = this.roster.get(device);
    return peer ? peer.user : short(device);
  }

  currentState() {
    const peers = [...this.roster.values()]
      .sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
      .map((p) => {
        const link = this.mesh ? this.mesh.links.get(p.device) : null;
        return { user: p.user, device: p.device,
                 state: link ? link.state : LinkState.CONNECTING,
                 rtt_ms: link ? link.rttMs : null,
                 path: link && link.state === LinkState.CONNECTED ? link.path : null,
                 connect_ms: link ? link.connectMs : null,
                 ice_restarts: link ? link.restarts : 0,
                 on_server: this.present.has(p.device),
                 links: this.reported.get(p.device) || [] };
      });
    return {
      user: this.user, device: this.key ? this.key.device : null, room: this.room,
      kind: this.kind, members: this.members, started_at: this.startedAt,
      server: {
        url: location.origin, connected: this.server.joined,
        state: this.server.joined ? "connected" : this.server.everJoined ? "down" : "connecting",
        outbox: this.store ? this.store.outboxCount() : 0,
      },
      peers,
      offline: [],
      refused: { ...this.refused },
    };
  }

  /**
   * @param {unknown} before a page token, or nothing for the newest page
   * @param {number} [limit]
   */
  async messages(before, limit = PAGE) {
    const key = parseOrderToken(before);
    const { envs, more } = this.store.page(key, Math.max(1, Math.min(limit, MAX_PAGE)));
    return {
      messages: envs.map((e) => this.messageDict(e)),
      older: more && envs.length ? orderToken(envs[0]) : null,
    };
  }

  /**
   * @param {string} text
   */
  async send(text) {
    const t0 = timing.now();
    let env;
    try {
      env = await this.store.author(this.key, this.user, text, Date.now());
    } catch (err) {
      if (err instanceof ProtocolError) throw new Error(err.message);
      throw err;
    }
    const id = envelopeId(env);
    this.delivery.set(id, { peers: new Set(), server: false });
    this.record(id, "authored", `written here by ${env.author}`);
    const t1 = timing.now();
    const peers = this.mesh.broadcast(msgFrame(env))
      .map((device) => ({ user: this.peerName(device), device }));
    timing.measure("send: onto the data channels (Mesh.broadcast)", t1);
    this.record(id, "sent", peers.length
      ? `sent on the data channels to ${peers.map((p) => p.user).join(", ")}`
      : "no data channel open: sent to no peer (sync will carry it)", { via: "channel", peers });
    // Uploaded once IndexedDB holds it (until then the journal does).
    this.store.flushed().then(() => this.flushOutbox(), () => {});
    const message = this.messageDict(env);
    this.emit({ type: "message", message });
    this.pushState();
    timing.measure("send: the whole of BrowserPeer.send", t0);
    return message;
  }

  /**
   * @param {Envelope} env
   */
  messageDict(env) {
    return {
      id: envelopeId(env), author: env.author, device: env.device, seq: env.seq,
      lamport: env.lamport, ts: env.ts, text: env.text,
      mine: env.device === this.key.device,
      delivery: this.deliveryDict(env),
    };
  }

  /**
   * @param {Envelope} env
   */
  deliveryDict(env) {
    if (env.device !== this.key.device) return null;
    const d = this.delivery.get(envelopeId(env));
    return {
      peers_reached: d ? d.peers.size : 0,
      peers_total: this.roster.size,
      server: Boolean(d && d.server) || this.store.onServer(envelopeId(env)),
    };
  }

  pushState() {
    this.emit({ type: "state", state: this.currentState() });
  }

  /**
   * @param {string} id
   */
  pushDelivery(id) {
    const env = this.store.get(id);
    if (env && env.device === this.key.device) {
      this.emit({ type: "delivery", id, delivery: this.deliveryDict(env) });
    }
  }

  /**
   * @param {Envelope} env
   */
  announce(env) {
    this.emit({ type: "message", message: this.messageDict(env) });
  }

  // -- the server ---------------------------------------------------------------------------

  /**
   * @param {boolean} up
   */
  onServerLink(up) {
    if (up !== this.serverUp) {
      const text = up ? (this.serverUp === null ? "server link up" : "server back: link up")
        : (this.serverUp ? "server lost" : "cannot reach the server");
      this.addEvent("server", text, { state: up ? "connected" : "down" });
      this.serverUp = up;
      if (this.owner) this.owner.pushRooms();
    }
    this.pushState();
    if (this.server.joined) this.flushOutbox();
  }

  /**
   * @param {any} reply the server's join reply
   * @param {number} generation
   */
  async onJoined(reply, generation) {
    if (typeof reply.kind === "string") this.kind = reply.kind;
    this.members = Array.isArray(reply.members) ? reply.members.map(String) : null;
    if (this.owner) this.owner.pushRooms();
    for (const peer of reply.peers || []) timing.linkStep(String(peer.device), "join reply");
    this.mesh.setIceServers(Array.isArray(reply.ice_servers) ? reply.ice_servers : []);
    // Checked side by side: each check waits on WebCrypto, and the links wait on all.
    /** @type {any[]} untrusted: from the server */
    const peers = Array.isArray(reply.peers) ? reply.peers : [];
    const vouched = await Promise.all(peers.map((peer) => this.vouchedPeer(peer)));
    const listed = peers.filter((_, i) => vouched[i]);
    // Merged, not rebuilt: a peer_joined or an offer that came while the join ran is newer
    // than this snapshot. A peer whose channel is still open stays even if the (just
    // restarted) server does not list it yet.
    const linked = new Set([...this.mesh.links.values()]
      .filter((l) => l.state === LinkState.CONNECTED).map((l) => l.peer.device));
    this.rosterRule.snapshot(listed, generation, linked);
    this.present = new Set(listed.map((p) => p.device).filter((d) => this.rosterRule.has(d)));
    this.syncRoster();
    // Offer at once to every listed peer not linked yet (this side offers to those with a
    // larger id), rather than when a retry's backoff ends: after a rejoin the links that
    // failed meanwhile would otherwise wait for their timers.
    for (const device of this.roster.keys()) this.mesh.nudge(device);
    this.pushState();
    await this.refreshKeys();
    await this.catchUpFromServer();
    this.flushOutbox();
  }

  /**
   * Whether a roster entry from the server is sound (its id is its key's); remembers the key.
   * @param {any} peer untrusted: from the server
   */
  async vouchedPeer(peer) {
    if (!peer || typeof peer.device !== "string" || peer.device === this.key.device) return false;
    const known = this.rosterRule.get(peer.device);
    if (known && known.public_key === peer.public_key && known.user === peer.user) return true;
    if (!(await keyMatchesDevice(peer.public_key, peer.device))) {
      this.log.warn(`roster entry for ${peer.user} does not match its key; skipped`);
      return false;
    }
    await this.store.rememberKey(peer.device, peer.user, peer.public_key, "server");
    return true;
  }

  /** Make the member list and the mesh match the merged roster. */
  syncRoster() {
    this.roster = new Map([...this.rosterRule.entries.values()].map((e) => [e.device,
      { user: e.user, device: e.device, public_key: e.public_key }]));
    this.mesh.updateRoster(this.roster.values());
  }

  /**
   * @param {any} data untrusted: from the server
   */
  async onPeerJoined(data) {
    const peer = data.peer;
    timing.linkStep(String(peer && peer.device), "peer_joined");
    if (!(await this.vouchedPeer(peer))) return;
    const before = this.rosterRule.get(peer.device);
    this.rosterRule.joined(peer);
    const now = this.rosterRule.get(peer.device);
    if (!now || now === before) return; // stale: that epoch already left, or a newer is known
    this.present.add(peer.device);
    this.addEvent("joined", `${peer.user} joined (device ${short(peer.device)})`,
      { user: peer.user, device: peer.device });
    this.syncRoster();
    // It may have restarted: offer now rather than when the retry backoff ends.
    this.mesh.nudge(peer.device);
    this.pushState();
  }

  /** Tell the linked peers which data channels this page has, with their RTTs. */
  reportLinks() {
    if (!this.mesh) return;
    const links = [...this.mesh.links.values()]
      .map((l) => ({ device: l.peer.device, state: l.state, rtt_ms: l.rttMs }))
      .sort((a, b) => (a.device < b.device ? -1 : 1));
    this.mesh.broadcast(linksFrame(links));
  }

  /**
   * @param {Peer} peer
   * @param {any} links untrusted: from the peer
   */
  onLinksReport(peer, links) {
    if (JSON.stringify(this.reported.get(peer.device) || null) !== JSON.stringify(links)) {
      this.reported.set(peer.device, links);
      this.pushState();
    }
  }

  /**
   * @param {any} data untrusted: from the server
   */
  onPeerLeft(data) {
    if (!this.rosterRule.left(data.device, data.epoch) && this.rosterRule.has(data.device)) {
      return; // an older presence of a device that has joined again since
    }
    const user = this.peerName(data.device);
    this.addEvent("left", `${user} left the server (device ${short(data.device)})`,
      { user, device: data.device });
    this.present.delete(data.device);
    this.reported.delete(data.device);
    this.roster.delete(data.device);
    this.mesh.peerLeft(data.device);
    this.pushState();
  }

  /**
   * @param {any} data untrusted: from the server
   */
  async onSignal(data) {
    const sender = data.from || {};
    timing.linkStep(String(sender.device), `${data.kind} received`);
    // An offer can overtake the peer_joined that announces its sender; the server vouches
    // for the sender's key in the signal itself.
    const known = this.rosterRule.get(sender.device);
    const newer = known && Number.isSafeInteger(sender.epoch) && known.epoch !== null
      && sender.epoch > known.epoch;
    if ((!known || newer) && sender.public_key && (await this.vouchedPeer(sender))) {
      if (this.rosterRule.joined(sender) || !known) this.syncRoster();
    }
    await this.mesh.handleSignal(String(sender.user || ""), String(sender.device || ""),
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
    await this.store.markOnServer(ids);
    for (const [id, cursor] of Object.entries(ids)) {
      this.record(id, "on_server", `the server stored it at cursor ${cursor}`, { cursor });
    }
    this.onUploaded(Object.keys(ids));
    // Ids this page lacks are read from the server's history soon, unless a peer brings
    // them first.
    this.catchup.serverNamed(Object.keys(ids), this.store.vector(), nowSeconds());
    this.wakeCatchUp();
  }

  /**
   * @param {string[]} ids
   */
  onUploaded(ids) {
    for (const id of ids) {
      const d = this.delivery.get(id) || { peers: new Set(), server: false };
      d.server = true;
      this.delivery.set(id, d);
      this.pushDelivery(id);
    }
    this.pushState();
  }

  async refreshKeys() {
    try {
      for (const d of await this.server.roomKeys()) {
        await this.store.rememberKey(d.id, d.user, d.public_key, "server");
      }
    } catch (err) {
      this.log.info(`could not refresh the room's keys: ${err.message}`);
    }
  }

  scheduleKeyRefresh() {
    if (!this.keyRefresh) {
      this.keyRefresh = this.refreshKeys().finally(() => { this.keyRefresh = null; });
    }
  }

  /** Read the server's history after the last cursor seen, verified like any message. */
  async catchUpFromServer() {
    let after = this.store.cursor;
    for (;;) {
      let page;
      try {
        page = await this.server.history(after);
      } catch (err) {
        this.log.info(`history catch-up stopped: ${err.message}`);
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
        const env = await this.verified(raw, "server");
        if (env) {
          good.push(env);
          cursors[envelopeId(env)] = row.cursor;
        }
      }
      const fresh = await this.store.addMany(good, "server");
      for (const env of fresh) {
        const cursor = cursors[envelopeId(env)];
        this.record(envelopeId(env), "received",
          `received via the server: read from its history (cursor ${cursor})`,
          { via: "server", cursor });
        this.announce(env);
      }
      this.noteFresh(null, fresh);
      if (rows.length) {
        this.addEvent("history", `history from the server: ${rows.length} messages, `
          + `${fresh.length} new`, { count: rows.length, fresh: fresh.length });
      }
      await this.store.markOnServer(cursors);
      const last = rows.length ? rows[rows.length - 1].cursor : after;
      await this.store.setCursor(last);
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
    if (this.closed || this.uploading || !this.server.joined || !this.store) return;
    this.uploading = true;
    try {
      for (;;) {
        const batch = [];
        let bytes = 0;
        for (const env of this.store.outbox(MAX_BATCH)) {
          bytes += JSON.stringify(env).length * 3;
          if (batch.length && bytes > UPLOAD_MAX_BYTES) break;
          batch.push(env);
        }
        if (!batch.length) return;
        const t0 = timing.now();
        const results = await this.server.publish(batch.map(envelopeToObject));
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
        await this.store.markOnServer(stored);
        const cursors = Object.values(stored);
        for (const [id, cursor] of Object.entries(stored)) {
          this.record(id, "uploaded", `uploaded from here; the server stored it at cursor ${cursor}`,
            { cursor });
        }
        if (cursors.length) {
          const last = Math.max(...cursors);
          this.addEvent("uploaded", `server stored ${cursors.length} message`
            + `${cursors.length === 1 ? "" : "s"} (up to cursor ${last})`,
            { count: cursors.length, cursor: last });
        }
        if (dropped.length) {
          this.log.warn("the server refused for good", dropped);
          await this.store.dropFromOutbox(dropped);
        }
        this.onUploaded(Object.keys(stored));
        if (!Object.keys(stored).length && !dropped.length) return;
      }
    } finally {
      this.uploading = false;
    }
  }

  // -- peers --------------------------------------------------------------------------------

  /**
   * @param {Peer} peer
   * @param {string} state
   */
  onPeerLink(peer, state) {
    if (state !== LinkState.CONNECTED) this.reported.delete(peer.device);
    this.reportLinks();
    if (this.linkStates.get(peer.device) !== state) {
      this.linkStates.set(peer.device, state);
      const link = this.mesh.links.get(peer.device);
      this.addEvent("link", `data channel to ${peer.user} ${state}`, {
        user: peer.user, device: peer.device, state, rtt_ms: link ? link.rttMs : null });
    }
    if (state === LinkState.CONNECTED) {
      this.apply(this.catchup.linkUp(peer.device, nowSeconds()))
        .catch((err) => this.log.error("pulling from a new link failed", err));
      this.wakeCatchUp();
      for (const frame of keysFramesFor(this.store.knownKeys())) this.mesh.send(peer.device, frame);
    } else {
      this.catchup.linkDown(peer.device);
    }
    this.pushState();
  }

  // -- delivery that needs no particular link (protocol.js CatchUp) ---------------------------

  /**
   * Carry out what the catch-up rules decided: digests, pulls, a read of the server.
   * @param {import("./protocol.js").CatchUpEffect[]} effects
   */
  async apply(effects) {
    let digest = null;
    for (const effect of effects) {
      if (effect.kind === "digest") {
        digest = digest || await vectorDigest(this.store.vector());
        this.mesh.send(effect.device, digestFrame(digest));
      } else if (effect.kind === "pull") {
        this.mesh.send(effect.device, vectorFrame(this.store.vector()));
      } else if (effect.kind === "pull_server") {
        this.pullFromServer().catch((err) => this.log.error("reading the server failed", err));
      }
    }
  }

  async pullFromServer() {
    try {
      await this.catchUpFromServer();
    } finally {
      this.catchup.serverPullEnded();
      this.wakeCatchUp();
    }
  }

  /** Run the catch-up rules' clock now, then again when the next thing is due. */
  wakeCatchUp() {
    if (this.closed) return;
    if (this.catchupTimer !== null) clearTimeout(this.catchupTimer);
    this.catchupTimer = setTimeout(() => this.catchUpTurn(), 0);
  }

  async catchUpTurn() {
    this.catchupTimer = null;
    try {
      await this.apply(this.catchup.due(nowSeconds(), this.store.vector(), this.server.joined));
    } catch (err) {
      this.log.error("catching up failed", err);
    }
    const next = this.catchup.nextDue();
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
    for (const [device, links] of this.reported) {
      reports.set(device, new Set(links.filter((l) => l.state === "connected").map((l) => l.device)));
    }
    this.catchup.fresh(source, new Set(fresh.map((e) => e.device)), reports, nowSeconds());
    this.wakeCatchUp();
  }

  /**
   * Handle a peer's frames one at a time, in order (checking signatures is asynchronous).
   * @param {Peer} peer
   * @param {unknown} frame the frame, parsed by the device
   */
  onFrame(peer, frame) {
    if (this.closed) return;
    const queue = this.peerQueues.get(peer.device) || Promise.resolve();
    const next = queue.then(() => this.handleFrame(peer, frame)).catch((err) => {
      this.log.error("handling a frame failed", err);
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
      const raw = untagRoom(typeof input === "string" ? parseFrame(input) : input, this.room);
      if (raw && raw.t === "ack") {
        this.onAck(peer, raw);
        return;
      }
      if (raw && raw.t === "links") {
        this.onLinksReport(peer, parseLinksFrame(raw));
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
      if (!frame.more) await this.apply(this.catchup.answerEnded(peer.device, nowSeconds()));
    } else if (frame.t === "vv") {
      await this.sendMissing(peer.device, frame.vector);
      await this.apply(this.catchup.vectorReceived(peer.device, frame.vector,
        this.store.vector(), nowSeconds()));
    } else if (frame.t === "vvd") {
      const ours = await vectorDigest(this.store.vector());
      await this.apply(this.catchup.digestReceived(peer.device, frame.digest, ours, nowSeconds()));
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
      if (!this.store.keyFor(d.id)) {
        await this.store.rememberKey(d.id, d.user, d.public_key, `peer:${peer.device}`);
      }
    }
  }

  /**
   * @param {Peer} peer
   * @param {Error & {code?: string}} err
   */
  refuse(peer, err) {
    const code = err.code || "error";
    this.refused[code] = (this.refused[code] || 0) + 1;
    this.log.warn(`refused a frame from ${peer.user} (${peer.device}): ${err.message}`);
    const reason = `${code}: ${String(err.message).slice(0, 200)}`;
    this.addEvent("refused", `refused a frame from ${peer.user}: ${reason}`,
      { user: peer.user, device: peer.device, reason });
  }

  /**
   * @param {Peer} peer
   * @param {any} raw untrusted: from the peer
   */
  onAck(peer, raw) {
    if (!Array.isArray(raw.ids)) return;
    for (const id of raw.ids.slice(0, 200)) {
      const d = typeof id === "string" ? this.delivery.get(id) : null;
      if (d && !d.peers.has(peer.device)) {
        d.peers.add(peer.device);
        this.record(id, "acked", `${peer.user} stored it (receipt)`,
          { user: peer.user, device: peer.device });
        this.pushDelivery(id);
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
      if (env.room !== this.room) {
        throw new ProtocolError(`message for room ${env.room}, not ${this.room}`);
      }
      const known = this.store.keyFor(env.device);
      if (!known) {
        this.scheduleKeyRefresh();
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
      this.refused[code] = (this.refused[code] || 0) + 1;
      this.log.warn(`refused a message from ${origin}: ${err.message}`);
      const reason = `${code}: ${String(err.message).slice(0, 200)}`;
      this.addEvent("refused", `refused a message from ${origin}: ${reason}`, { reason });
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
    const fresh = await this.store.addMany(good, `peer:${peer.device}`);
    if (live && fresh.length < good.length) {
      // A live message is sent once, by its author, on each channel: one held already was
      // replayed. Ignored (the log keeps one copy), and said.
      // fresh is a subset of good and shorter: some envelope of good is not in it.
      const replayed = /** @type {Envelope} */ (good.find((e) => !fresh.includes(e)));
      const held = envelopeId(replayed);
      this.addEvent("refused", `ignored a replayed message from ${peer.user}: ${held} is `
        + "already held", { user: peer.user, device: peer.device,
          reason: `replayed: ${held} already held` });
    }
    const via = live ? "channel" : "sync";
    for (const env of fresh) {
      this.record(envelopeId(env), "received", receivedText(env, peer, live),
        { via, user: peer.user, device: peer.device });
      this.announce(env);
    }
    if (!live) {
      // An empty batch ends every exchange of version vectors: nothing was missing.
      this.addEvent("sync", envs.length
        ? `sync batch from ${peer.user}: ${envs.length} messages, ${fresh.length} new`
        : `in sync with ${peer.user}: nothing missing`, { user: peer.user, device: peer.device, count: envs.length,
          fresh: fresh.length });
    }
    timing.measure("receive: verify, hold, draw (BrowserPeer.receive)", t0);
    // The receipt, the word to other peers and the upload wait until IndexedDB holds the
    // messages; the peer's next frames do not.
    const stored = this.store.flushed();
    stored.then(() => this.afterStored(good, fresh, peer, live, t0), () => {})
      .catch((err) => this.log.error("after storing received messages", err));
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
    if (good.length) {
      this.mesh.send(peer.device, encodeFrame({ t: "ack", ids: good.map(envelopeId) }));
      timing.measure("receive: receipt sent after the commit", t0);
    }
    this.noteFresh(peer.device, fresh);
    if (fresh.length) this.flushAfterGrace();
    if (live && this.store.hasGaps()) {
      // A gap: a message was missed; ask this peer for what we lack.
      await this.apply(this.catchup.gapSeen(peer.device, nowSeconds()));
    }
  }

  /** Send a peer everything its vector says it lacks, in bounded batches; the last batch
   * says more: false.
   * @param {string} device
   * @param {Map<string, number>} vector
   */
  async sendMissing(device, vector) {
    const missing = this.store.missingFor(vector);
    const user = this.peerName(device);
    for (let start = 0; start < missing.length; start += MAX_BATCH) {
      const batch = missing.slice(start, start + MAX_BATCH);
      for (const frame of batchesFor(batch, true)) {
        if (!(await this.mesh.drained(device)) || !this.mesh.send(device, frame)) return;
      }
      for (const env of batch) {
        this.record(envelopeId(env), "sent", `sent to ${user} by anti-entropy (sync batch)`,
          { via: "sync", peers: [{ user, device }] });
      }
    }
    for (const frame of batchesFor([], false)) this.mesh.send(device, frame);
  }
}
