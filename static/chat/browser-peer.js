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
//
// Its parts, each a module of its own that reads and calls the rest of the room through
// `this.peer`: the server's side of the room (join, roster, signals, stored notices, keys,
// history, uploads) in browser-room-server.js, delivery that needs no particular link
// (protocol/catchup.js CatchUp) in browser-sync.js, and frames from peers and the messages
// they bring in browser-receiving.js.

import { short } from "./browser-link.js";
import { BrowserLog } from "./browser-log.js";
import { LinkState } from "./browser-mesh.js";
import { RoomMesh } from "./browser-room-mesh.js";
import { ServerLink } from "./browser-server.js";
import { RoomServer } from "./browser-room-server.js";
import { nowSeconds, Sync } from "./browser-sync.js";
import { Receiving } from "./browser-receiving.js";
import { Roster } from "./roster.js";
import { timing } from "./timing.js";
import { within } from "./wait.js";
/** @typedef {import("./protocol/envelope.js").Envelope} Envelope */
/** @typedef {import("./browser-mesh.js").Peer} Peer */
/**
 * What a room needs of the page's device (browser-device.js): the signed-in user, the key,
 * the database, the server connection and the mesh (through its RoomMesh), and word back
 * when the room list changes, the server drops the page from the room or refuses its join.
 * @typedef {import("./browser-room-mesh.js").MeshOwner & {
 *   user: string, key: import("./protocol/keys.js").DeviceKey, db: IDBDatabase,
 *   server: import("./browser-server.js").ServerConnection,
 *   pushRooms(): void, removed(room: string): void,
 *   refused(room: string, error: {code: string, message: string}): void,
 * }} RoomOwner
 */
import { CatchUp } from "./protocol/catchup.js";
import { envelopeId, envelopeIdParts } from "./protocol/envelope.js";
import { ProtocolError } from "./protocol/errors.js";
import { linksFrame } from "./protocol/links.js";
import { orderToken, parseOrderToken } from "./protocol/paging.js";
import { keysFramesFor, msgFrame } from "./protocol/sync.js";

const PAGE = 50;
const MAX_PAGE = 200;
const UPLOAD_RETRY_MS = 2000;
// The network view's records (docs/network-view.md), kept in memory for the page's life.
const TIMELINE_SIZE = 500;
const PATHS_KEPT = 5000;
// How often the page tells its linked peers about its data channels (and on every change).
const LINKS_REPORT_MS = 5000;
const SERVER_STEPS = new Set(["uploaded", "on_server"]);

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
    /** @type {Promise<void>} settles once start() has (the device opens some rooms later) */
    this.started = Promise.resolve();
    /** Start now what waits for the page's shown room (set by BrowserDevice.open). */
    this.want = () => {};
    /** @type {ReturnType<typeof setInterval>[]} */
    this.intervals = [];
    this.log = log;
    /** @type {((event: object) => void)[]} */
    this.listeners = [];
    this.roster = new Map(); // device -> {user, device, public_key}
    this.delivery = new Map(); // own message id -> {peers: Set, server: bool}
    /** @type {Record<string, number>} refusal code -> count */
    this.refused = {};
    this.startedAt = Date.now();
    this.present = new Set(); // devices the server lists in the room
    /** @type {object[]} */
    this.timeline = [];
    this.eventSeq = 0;
    /** @type {Map<string, Record<string, any>[]>} id -> steps, the last PATHS_KEPT messages */
    this.paths = new Map();
    /** @type {Map<string, string>} device -> link state */
    this.linkStates = new Map();
    /** @type {(() => boolean)[]} linksSettled() waiting: each says whether it is done */
    this.settling = [];
    /** @type {() => void} */
    this.rostered = () => {};
    /** Settles once a join reply has set the roster (RoomServer.onJoined). */
    this.listed = new Promise((resolve) => { this.rostered = () => resolve(undefined); });
    /**
     * @type {Map<string, {device: string, state: string, rtt_ms: number | null}[]>} device ->
     *   the links that peer last reported of its own
     */
    this.reported = new Map();
    // What to pull, from whom and when (protocol/catchup.js CatchUp).
    this.catchup = new CatchUp();
    // Its parts, kept in their own modules: the server's side of the room (uploads, history,
    // stored notices), catch-up that needs no particular link, and the receive path.
    this.roomServer = new RoomServer(this);
    this.sync = new Sync(this);
    this.receiving = new Receiving(this);
    // Set by start(), before the server link calls back or the UI asks for anything.
    /** @type {string} */
    this.user;
    /** @type {IDBDatabase} */
    this.db;
    /** @type {import("./protocol/keys.js").DeviceKey} */
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
        peer_joined: (data) => this.roomServer.onPeerJoined(data),
        peer_left: (data) => this.roomServer.onPeerLeft(data),
        signal: (data) => this.roomServer.onSignal(data),
        stored: (data) => this.roomServer.onStored(data),
        removed: () => { if (this.owner) this.owner.removed(this.room); },
      },
      onJoining: () => this.rosterRule.beginJoin(),
      onJoined: (reply, generation) => this.roomServer.onJoined(reply, generation),
      onLink: (up) => this.roomServer.onServerLink(up),
      linked: (withinMs) => this.linksSettled(withinMs),
      onRefused: (error) => {
        this.addEvent("refused", `the server refused to join: ${error.message}`,
          { reason: `${error.code}: ${error.message}` });
        if (this.owner) this.owner.refused(this.room, error);
      },
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
    if (this.closed) return; // left while its log loaded
    this.mesh = new RoomMesh(owner, this.room, (peer, state) => this.onPeerLink(peer, state));
    this.addEvent("started", `${this.user}'s browser peer started in #${this.room}`);
    this.server.start();
    this.intervals.push(setInterval(() => this.roomServer.flushOutbox(), UPLOAD_RETRY_MS),
      setInterval(() => this.reportLinks(), LINKS_REPORT_MS));
  }

  /** Leave the room: the server is told, the room's links close unless another room has
   * them, and nothing of the room runs any more. Its log stays in IndexedDB. */
  async leave() {
    this.closed = true;
    for (const timer of this.intervals) clearInterval(timer);
    if (this.sync.catchupTimer !== null) clearTimeout(this.sync.catchupTimer);
    if (this.roomServer.graceTimer !== null) clearTimeout(this.roomServer.graceTimer);
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
    if (!this.store.has(id)) throw new Error("this device holds no such message");
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
    const { envs, more } = await this.store.page(key, Math.max(1, Math.min(limit, MAX_PAGE)));
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
    this.store.flushed().then(() => this.roomServer.flushOutbox(), () => {});
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
   * @param {{device: string, seq: number}} env the message, or its id's parts
   */
  deliveryDict(env) {
    if (env.device !== this.key.device) return null;
    const id = envelopeId(env);
    const d = this.delivery.get(id);
    return {
      peers_reached: d ? d.peers.size : 0,
      peers_total: this.roster.size,
      server: Boolean(d && d.server) || this.store.onServer(id),
    };
  }

  pushState() {
    this.emit({ type: "state", state: this.currentState() });
  }

  /**
   * @param {string} id
   */
  pushDelivery(id) {
    const parts = envelopeIdParts(id);
    if (parts && parts.device === this.key.device && this.store.has(id)) {
      this.emit({ type: "delivery", id, delivery: this.deliveryDict(parts) });
    }
  }

  /**
   * @param {Envelope} env
   */
  announce(env) {
    this.emit({ type: "message", message: this.messageDict(env) });
  }

  // -- peers --------------------------------------------------------------------------------

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
   * Settles once a join reply has set the roster and every peer it lists has its data
   * channel open or has failed: the page loads and joins its other rooms after the shown
   * room's links (ServerConnection.joinAll, BrowserDevice.start). At most `withinMs`.
   * @param {number} withinMs
   * @returns {Promise<void>}
   */
  async linksSettled(withinMs) {
    /** @type {() => boolean} */
    let done = () => true;
    const settled = this.listed.then(() => new Promise((resolve) => {
      done = () => {
        const all = [...this.roster.keys()].every((device) => {
          const link = this.mesh ? this.mesh.links.get(device) : null;
          return link && (link.state === LinkState.CONNECTED || link.state === LinkState.FAILED);
        });
        if (all) resolve(undefined);
        return all;
      };
      if (!done()) this.settling.push(done);
    }));
    await within(settled, withinMs);
    this.settling = this.settling.filter((check) => check !== done);
  }

  /** Settle the linksSettled() waiting whose links are now all open or failed. */
  checkSettled() {
    if (this.settling.length) this.settling = this.settling.filter((done) => !done());
  }

  /**
   * @param {Peer} peer
   * @param {string} state
   */
  onPeerLink(peer, state) {
    this.checkSettled();
    if (state !== LinkState.CONNECTED) this.reported.delete(peer.device);
    this.reportLinks();
    if (this.linkStates.get(peer.device) !== state) {
      this.linkStates.set(peer.device, state);
      const link = this.mesh.links.get(peer.device);
      this.addEvent("link", `data channel to ${peer.user} ${state}`, {
        user: peer.user, device: peer.device, state, rtt_ms: link ? link.rttMs : null });
    }
    if (state === LinkState.CONNECTED) {
      this.sync.apply(this.catchup.linkUp(peer.device, nowSeconds()))
        .catch((err) => this.log.error("pulling from a new link failed", err));
      this.sync.wakeCatchUp();
      for (const frame of keysFramesFor(this.store.knownKeys())) this.mesh.send(peer.device, frame);
    } else {
      this.catchup.linkDown(peer.device);
    }
    this.pushState();
  }

  // -- frames from peers: browser-receiving.js (these three are called from outside) ---------

  /**
   * @param {Peer} peer
   * @param {unknown} frame the frame, parsed by the device
   */
  onFrame(peer, frame) {
    this.receiving.onFrame(peer, frame);
  }

  /**
   * @param {Peer} peer
   * @param {unknown} input the frame as text, or parsed
   */
  async handleFrame(peer, input) {
    await this.receiving.handleFrame(peer, input);
  }

  /**
   * @param {Peer} peer
   * @param {Error & {code?: string}} err
   */
  refuse(peer, err) {
    this.receiving.refuse(peer, err);
  }
}
