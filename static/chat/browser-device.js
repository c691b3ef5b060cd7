// @ts-check
// The browser page's device: every room of the page over one mesh, with one key, one
// database and one Socket.IO connection. The JavaScript twin of peer_agent/device.py.
//
// The device signs in once (the page's session cookie traded for a bearer token), holds the
// device key and the IndexedDB database of every room, one ServerConnection (one Socket.IO
// connection that every room joins, signals and uploads over) and one Mesh (one
// RTCPeerConnection and data channel per other device, whatever rooms the two share). Each
// room is a BrowserPeer with its own join, roster, log, outbox and catch-up, seeing the mesh
// through a RoomMesh.
//
// Frames on a data channel name their room (protocol/channel.js tagRoom): the device parses
// each once and hands it to that room; a frame for a room the page is not in is refused
// (`not_in_room`), and one from a device the room does not list yet is held for a moment
// (its sender may have read the room's roster before this page heard that it joined):
// browser-frame-router.js.
//
// It is also the chat UI's backend (ui.js, rooms.js), as agent-backend.js is on the agent's
// page: one room shown at a time (`room`), whose live events pass, and the room list with
// unread counts, join or create, direct messages and leave.
//
// The rooms joined are remembered in this browser (localStorage, per user) with their unread
// counts (browser-rooms-file.js), and joined again when the page opens; a browser that
// remembers none starts with the rooms the server lists for the user.

import { FrameRouter } from "./browser-frame-router.js";
import { loadOrCreateDeviceKey, openDatabase } from "./browser-log.js";
import { Mesh } from "./browser-mesh.js";
import { BrowserPeer } from "./browser-peer.js";
import { loadRooms, saveRooms } from "./browser-rooms-file.js";
import { ServerConnection, ServerError } from "./browser-server.js";
import { isNormalizedName } from "./protocol/names.js";
import { within } from "./wait.js";

/** @typedef {import("./browser-mesh.js").Peer} Peer */
/** @typedef {Record<string, any>} LiveEvent */
/** @typedef {{name: string, kind: string | null, unread: number, server: boolean}} RoomEntry */

// How long joining from the UI waits for the server's answer before leaving it to the
// background (the server may be down: the room is joined once it is back).
const JOIN_ANSWER_WAIT_MS = 5000;
const MAX_ROOM_CHARS = 64;
// How long the page's other rooms wait for the shown room to join and link before they load.
const OTHERS_WAIT_MAX_MS = 3000;

/**
 * A room name in normal form (as Python's normalize_room), or an Error saying why not.
 * @param {string} raw
 */
export function roomName(raw) {
  const name = String(raw).normalize("NFKC").toLowerCase().normalize("NFKC").trim();
  if (!isNormalizedName(name, MAX_ROOM_CHARS)) {
    throw new Error(`invalid room name: letters, digits, "-", "_" and "." only, `
      + `starting with a letter or digit, at most ${MAX_ROOM_CHARS} characters`);
  }
  return name;
}

export class BrowserDevice {
  /**
   * @param {{csrfToken: string, log?: Console}} options
   */
  constructor({ csrfToken, log = console }) {
    this.log = log;
    this.server = new ServerConnection({ csrfToken, log });
    /** @type {Map<string, BrowserPeer>} room -> the room, in the order joined */
    this.joined = new Map();
    /** @type {Map<string, number>} room -> messages from others not read yet */
    this.unread = new Map();
    /** @type {Set<string>} rooms being joined from the UI (their refusal is the UI's) */
    this.joiningFromUi = new Set();
    /** frames from the mesh, handed to their rooms */
    this.frames = new FrameRouter({
      joined: this.joined, roomsOf: (device) => this.roomsOf(device), log });
    /** @type {((event: LiveEvent) => void)[]} */
    this.listeners = [];
    /** @type {string | null} the room shown */
    this.room = null;
    /** @type {Map<string, {kind: string, members: string[] | null}>} room -> as its state said */
    this.described = new Map();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.roomsPush = null;
    // Set by start().
    /** @type {string} */
    this.user;
    /** @type {IDBDatabase} */
    this.db;
    /** @type {import("./protocol/keys.js").DeviceKey} */
    this.key;
    /** @type {Mesh} */
    this.mesh;
    /** @type {Promise<string>} set by prepare(): the device's registration, answered */
    this.registered;
  }

  /**
   * What a page may do before it holds the device's lock (browser-main.js), since none of it
   * speaks for the device in a room: sign in with the session, connect the socket (its
   * handshake needs only the token), load or make the device key and register it. Started at
   * once, it overlaps the wait for the lock; `start` then opens the rooms.
   * @param {string | null} asked the room the page's address names: joined first
   */
  async prepare(asked) {
    this.server.shown = asked;
    this.user = await this.server.fetchToken();
    this.server.connect();
    this.db = await openDatabase(this.user);
    this.key = await loadOrCreateDeviceKey(this.db);
    this.registered = this.server.registerDevice(this.key.publicKey, "browser");
    this.registered.catch(() => {}); // awaited by start()
  }

  /**
   * Open the rooms remembered (`asked` first, added if new: the room the page's address
   * names). Each room's log loads while the device's registration is answered; the rooms
   * join once it is, the shown room as soon as its log is loaded.
   * @param {string | null} asked
   * @param {Promise<void>} [prepared] `prepare(asked)` started already
   */
  async start(asked, prepared = this.prepare(asked)) {
    await prepared;
    this.mesh = new Mesh({
      key: this.key, log: this.log,
      roomFor: (device) => this.roomFor(device),
      sendSignal: (room, to, kind, payload) => this.sendRoomSignal(room, to, kind, payload),
      onFrame: (peer, text) => this.frames.onFrame(peer, text),
      onLink: (peer, state) => { for (const r of this.roomsOf(peer.device)) r.onPeerLink(peer, state); },
      onPath: (peer) => { for (const r of this.roomsOf(peer.device)) r.pushState(); },
    });
    const saved = loadRooms(this.user);
    // What the server says of the user's rooms (kinds and members: a direct room is named
    // after its other member before its join answers); the list itself when this browser
    // remembers none.
    const listed = this.server.userRooms().then((rooms) => {
      for (const r of rooms) this.remember(r);
      this.pushRooms();
      return rooms.map((/** @type {any} */ r) => String(r.room));
    }, (err) => {
      this.log.info(`could not read the rooms the server lists: ${err.message}`);
      return [];
    });
    /** @type {string[]} */
    const names = saved.rooms ?? await listed;
    for (const [room, n] of Object.entries(saved.unread)) {
      if (Number.isSafeInteger(n) && n > 0) this.unread.set(room, n);
    }
    const joining = this.registered.then(() => this.server.useDevice(this.key.device));
    if (!asked) {
      await Promise.all([...names.map((room) => this.open(room)), joining]);
      this.save();
      return;
    }
    // The room asked for first: the page shows it, and it signals through it first. The
    // others load once it has joined and linked: a long room's log takes a while to read and
    // hold, on the page's one thread, which the shown room's links and first messages wait on
    // (a kept room of 10,000 messages put off the first message shown by 350 ms).
    const shown = this.open(asked);
    await Promise.all([shown, joining]);
    const after = shown.then((peer) => this.settledOrLate(peer));
    for (const room of names) {
      if (room !== asked) this.open(room, after).catch((err) => this.log.error(`opening ${room} failed`, err));
    }
    this.save();
  }

  /**
   * Settles once `peer` has the server's first answer to its join and its links are up (or
   * failed), or after OTHERS_WAIT_MAX_MS.
   * @param {BrowserPeer} peer
   */
  settledOrLate(peer) {
    return within(peer.server.settled.then(() => (peer.server.refusal ? undefined
      : peer.linksSettled(OTHERS_WAIT_MAX_MS))), OTHERS_WAIT_MAX_MS);
  }

  // -- the rooms ---------------------------------------------------------------------------

  /**
   * Start being in `room`: its log loaded and its join under way (once `after` settles; the
   * room is listed at once).
   * @param {string} room
   * @param {Promise<unknown>} [after]
   */
  async open(room, after = Promise.resolve()) {
    const peer = new BrowserPeer({ room, owner: this, log: this.log });
    this.joined.set(room, peer);
    if (!this.unread.has(room)) this.unread.set(room, 0);
    peer.subscribe((event) => this.fromRoom(room, event));
    // A room the reader asks for (peer.want(): shown, or called on by the UI) loads at once,
    // not after the shown room's links.
    const wanted = new Promise((resolve) => { peer.want = () => resolve(undefined); });
    peer.started = Promise.race([after, wanted]).then(() => (peer.closed ? undefined : peer.start()));
    await peer.started;
    return peer;
  }

  /**
   * A live event of `room`: counted as unread if it shows another's message in a room not
   * being read, and passed to the UI if the room is shown.
   * @param {string} room
   * @param {LiveEvent} event
   */
  fromRoom(room, event) {
    if (event.type === "message" && !event.message.mine && this.unread.has(room)
        && !this.beingRead(room)) {
      this.unread.set(room, /** @type {number} */ (this.unread.get(room)) + 1);
      this.pushRooms();
    }
    if (event.type === "state") this.remember(event.state);
    if (room !== this.room) return;
    for (const listener of this.listeners) {
      try {
        listener({ ...event, room });
      } catch (err) {
        this.log.error("a UI listener failed", err);
      }
    }
  }

  /**
   * Whether `room` is on screen now: its messages are read as they come. Counting one then
   * marking it read again cost a write of the saved rooms and two room list updates for
   * every message.
   * @param {string} room
   */
  beingRead(room) {
    return room === this.room && globalThis.document?.visibilityState === "visible";
  }

  /** Remember the rooms joined and their unread counts in this browser. */
  save() {
    saveRooms(this.user, this.joined, this.unread, this.log);
  }

  /** Tell the UI the room list changed (and remember it), once per turn of the event loop. */
  pushRooms() {
    if (this.roomsPush !== null) return;
    this.roomsPush = setTimeout(() => {
      this.roomsPush = null;
      this.save();
      const event = { type: "rooms", rooms: this.roomsList() };
      for (const listener of this.listeners) listener(event);
    }, 0);
  }

  /** @returns {RoomEntry[]} */
  roomsList() {
    return [...this.joined].map(([name, peer]) => ({
      name, kind: peer.kind, unread: this.unread.get(name) || 0, server: peer.server.joined }));
  }

  /**
   * The room named, or an Error.
   * @param {string | null} name
   */
  peer(name) {
    const peer = name === null ? undefined : this.joined.get(name);
    if (!peer) throw new Error(name === null ? "no room is open" : `not in room ${name}`);
    return peer;
  }

  /**
   * The room named once its log is loaded (the page's other rooms load after the shown one).
   * @param {string | null} name
   */
  async started(name) {
    const peer = this.peer(name);
    if (name === this.room) peer.want();
    const attempt = peer.started;
    try {
      await attempt;
    } catch (err) {
      // A log that failed to load is read again when the room is next asked for (before,
      // the room stayed listed and refused every call for the page's life).
      if (peer.closed) throw err;
      if (peer.started === attempt) {
        this.log.warn(`reading ${peer.room}'s log again: ${err instanceof Error ? err.message : err}`);
        peer.started = peer.start();
      }
      await peer.started;
    }
    return peer;
  }

  /**
   * The server refused `room`'s join. A private room the user is no longer a member of
   * (removed while the page was away, or before a kept room's join went out) is left and
   * dropped from the list, as if the server had said `removed`; a join from the UI reports
   * its refusal itself (`settle`), and other refusals leave the room listed.
   * @param {string} room
   * @param {{code: string, message: string}} error
   */
  refused(room, error) {
    if (error.code !== "not_a_member" || this.joiningFromUi.has(room)) return;
    this.removed(room);
  }

  /**
   * The server dropped this page from `room` (removed from a private room): leave it.
   * @param {string} room
   */
  removed(room) {
    if (!this.joined.has(room)) return;
    this.log.warn(`removed from ${room} by its owner`);
    this.leave(room).catch((err) => this.log.error("leaving a room failed", err));
  }

  // -- the mesh ------------------------------------------------------------------------------

  /**
   * The rooms that list `device`, in the order they were joined.
   * @param {string} device
   */
  roomsOf(device) {
    return [...this.joined.values()].filter((r) => r.mesh && r.mesh.peers.has(device));
  }

  /**
   * The room to signal `device` through: the first shared one (the first room at all if none
   * lists it yet).
   * @param {string} device
   */
  roomFor(device) {
    const shared = this.roomsOf(device);
    if (shared.length) return shared[0].room;
    return this.joined.keys().next().value ?? "";
  }

  /**
   * @param {string} room
   * @param {string} to
   * @param {string} kind
   * @param {object} payload
   */
  async sendRoomSignal(room, to, kind, payload) {
    const peer = this.joined.get(room) || this.roomsOf(to)[0];
    if (!peer) throw new ServerError(`no room shared with device ${to.slice(0, 8)}`);
    await peer.server.signal(to, kind, payload);
  }

  /** A room's roster changed: link to every device any room lists. */
  rosterChanged() {
    /** @type {Map<string, Peer>} */
    const union = new Map();
    for (const room of this.joined.values()) {
      if (!room.mesh) continue;
      for (const [device, peer] of room.mesh.peers) if (!union.has(device)) union.set(device, peer);
    }
    this.mesh.updateRoster(union.values());
  }

  /**
   * The room now lists `device`: hand it the frames held for it, in order.
   * @param {string} room
   * @param {string} device
   */
  admitted(room, device) {
    this.frames.admitted(room, device);
  }


  // -- the chat UI's backend (ui.js, rooms.js) ---------------------------------------------

  /**
   * Show `room` from now on (null: none): calls name it, and only its live events pass.
   * @param {string | null} room
   */
  setRoom(room) {
    this.room = room;
    this.server.shown = room; // joined first on a reconnection
    if (room !== null) this.joined.get(room)?.want();
  }

  /**
   * @param {(event: LiveEvent) => void} listener
   */
  subscribe(listener) {
    this.listeners.push(listener);
  }

  async state() {
    return this.remember((await this.started(this.room)).currentState());
  }

  /**
   * @param {string} room
   */
  async stateOf(room) {
    return this.remember((await this.started(room)).currentState());
  }

  /**
   * Note what a state says of its room (a direct room is named after its other member).
   * @param {any} state
   */
  remember(state) {
    if (state && typeof state.room === "string" && typeof state.kind === "string") {
      this.described.set(state.room, { kind: state.kind, members: state.members });
    }
    return state;
  }

  /**
   * @param {string | null} before
   * @param {number} [limit]
   */
  async messages(before, limit) {
    return (await this.started(this.room)).messages(before, limit);
  }

  /**
   * @param {string} text
   */
  async send(text) {
    return (await this.started(this.room)).send(text);
  }

  async events() {
    return (await this.started(this.room)).events();
  }

  /**
   * @param {string} id
   */
  async path(id) {
    return (await this.started(this.room)).path(id);
  }

  async rooms() {
    return this.roomsList();
  }

  /**
   * Join a room, or create it private; its state. A room the server refuses (someone else's
   * private room, a bad name) is not kept, and the server's reason is the error.
   * @param {string} name
   * @param {boolean} isPrivate
   */
  async join(name, isPrivate) {
    const room = roomName(name);
    if (isPrivate) await this.server.createRoom(room, true);
    if (!this.joined.has(room)) {
      this.joiningFromUi.add(room);
      try {
        await this.settle(await this.open(room));
      } finally {
        this.joiningFromUi.delete(room);
      }
      this.save();
    }
    this.pushRooms();
    return this.remember((await this.started(room)).currentState());
  }

  /**
   * Wait briefly for the server's answer to a join from the UI: a refusal is reported and
   * the room dropped; a server that does not answer in time leaves the room joined, to be
   * entered once the server is back.
   * @param {BrowserPeer} peer
   */
  async settle(peer) {
    await within(peer.server.settled, JOIN_ANSWER_WAIT_MS);
    const refusal = peer.server.refusal;
    if (refusal === null) return;
    this.joined.delete(peer.room);
    this.unread.delete(peer.room);
    await peer.leave();
    throw new ServerError(refusal.message, refusal.code);
  }

  /**
   * Open (or reopen) the direct-message room with `user`; its state.
   * @param {string} user
   */
  async direct(user) {
    const made = this.remember(await this.server.directRoom(user));
    return this.join(String(made.room), false);
  }

  /**
   * @param {string} room
   */
  async leave(room) {
    const peer = this.peer(room);
    this.joined.delete(room);
    this.unread.delete(room);
    this.described.delete(room);
    await peer.leave();
    this.rosterChanged();
    this.save();
    this.pushRooms();
    return { left: room };
  }

  /**
   * Mark everything in `room` read.
   * @param {string} room
   */
  async markRead(room) {
    this.peer(room);
    this.unread.set(room, 0);
    this.pushRooms();
    return { room, unread: 0 };
  }

  /** The page's peer connections, one per other device, with the rooms each carries. */
  async links() {
    return [...this.mesh.links].sort(([a], [b]) => (a < b ? -1 : 1)).map(([device, link]) => ({
      user: link.peer.user, device, state: link.state, rtt_ms: link.rttMs,
      attempts: link.attempts, connect_ms: link.connectMs,
      rooms: this.roomsOf(device).map((r) => r.room),
    }));
  }
}
