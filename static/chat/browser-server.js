// @ts-check
// The browser peer's link to the server: a bearer token got with the page's session cookie,
// the JSON API, and one Socket.IO connection (the official client, served from
// static/vendor/) for every room of the page: presence, signals and log uploads.
// `ServerConnection` is the JavaScript twin of peer_agent/signaling_client.py, `ServerLink`
// (one room on that connection) of peer_agent/room_signaling.py.

import { io } from "../vendor/socket.io.esm.min.js";

/** @typedef {import("../vendor/socket.io.esm.min.js").Socket} Socket */

const CALL_TIMEOUT_MS = 10000;
// How long the other rooms' joins wait for the shown room's join to be answered on a connection.
const SHOWN_FIRST_MAX_MS = 2000;
// How long they wait, once it joined, for its links to form (or fail).
const LINKS_FIRST_MAX_MS = 1000;
// The server's notices that name a room; each goes to that room's link.
const ROOM_NOTICES = ["peer_joined", "peer_left", "signal", "stored", "members", "removed"];

/** The server refused a request; `code` is the server's error code when it gave one. */
export class ServerError extends Error {
  /**
   * @param {string} message
   * @param {string} [code]
   * @param {number} [status]
   */
  constructor(message, code = "http_error", status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/**
 * Owns the token and the page's one Socket.IO connection, which every room joins. The client
 * reconnects by itself with jittered backoff (0.5 s doubling to 10 s); every (re)connection
 * joins each room again (ServerLink), the room shown first (`shown`) and the others once the
 * server has answered it: a page of a user with several rooms asked for all their joins at
 * once, and the shown room's join waited behind the others' at the server (each a few
 * database writes), which put off the links and the first live message it shows. The
 * server's notices go to the room they name.
 */
export class ServerConnection {
  /**
   * @param {object} options
   * @param {string} options.csrfToken
   * @param {Console} [options.log]
   */
  constructor({ csrfToken, log = console }) {
    this.csrfToken = csrfToken;
    this.log = log;
    /** @type {string | null} */
    this.token = null;
    /** @type {string | null} */
    this.user = null;
    /** @type {string | null} */
    this.device = null;
    /** @type {Socket | null} */
    this.socket = null;
    /** @type {Map<string, ServerLink>} room -> its link */
    this.rooms = new Map();
    /** @type {string | null} the room the page shows, joined before the others */
    this.shown = null;
    /** @type {Promise<unknown>} settles once this connection's join of the shown room did */
    this.shownJoined = Promise.resolve();
    /** @type {() => void} settles `shownJoined` */
    this.releaseShown = () => {};
    /** Counts the connections: a join waiting for an earlier one's shown room is dropped. */
    this.generation = 0;
    this.closed = false;
  }

  /**
   * Trade the page's session cookie for a bearer token (CSRF-protected POST); the user name.
   * @returns {Promise<string>}
   */
  async fetchToken() {
    const reply = await fetch("/session/token", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": this.csrfToken, "Content-Type": "application/json" },
      body: "{}",
    });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) {
      const err = body.error || {};
      throw new ServerError(err.message || `HTTP ${reply.status}`, err.code, reply.status);
    }
    this.token = body.token;
    const user = /** @type {string} */ (body.user.username);
    this.user = user;
    return user;
  }

  /**
   * A JSON API call with the bearer token; the reply's JSON, or ServerError.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<any>}
   */
  async api(method, path, body) {
    /** @type {RequestInit & {headers: Record<string, string>}} */
    const init = {
      method,
      headers: { Authorization: `Bearer ${this.token}` },
      credentials: "omit",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const reply = await fetch(path, init);
    const data = await reply.json().catch(() => ({}));
    if (!reply.ok) {
      const err = data.error || {};
      throw new ServerError(err.message || `HTTP ${reply.status} from ${path}`, err.code,
        reply.status);
    }
    return data;
  }

  /**
   * Register this device's public key to the account (a no-op when it already is).
   * @param {string} publicKey
   * @param {string} label
   */
  async registerDevice(publicKey, label) {
    const data = await this.api("POST", "/api/devices", { public_key: publicKey, label });
    return data.device.id;
  }

  /** The rooms on the user's list at the server: [{room, kind, owner, members, cursor}]. */
  async userRooms() {
    return (await this.api("GET", "/api/rooms")).rooms;
  }

  /**
   * Make a room (private: members only, the user first); the server's description of it.
   * @param {string} name
   * @param {boolean} isPrivate
   */
  createRoom(name, isPrivate) {
    return this.api("POST", "/api/rooms", { name, private: isPrivate });
  }

  /**
   * The direct-message room with `user` (made on first use); the server's description of it.
   * @param {string} user
   */
  directRoom(user) {
    return this.api("POST", "/api/dm", { username: user });
  }

  /**
   * Connect and keep connecting. The connection needs only the token; the rooms join once
   * the device is known (`useDevice`), on this connection and on every later one.
   */
  connect() {
    if (this.closed) return;
    const socket = io({
      transports: ["websocket"],
      // A function, so that every reconnection presents the current token.
      auth: (cb) => cb({ token: this.token }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 10000,
      randomizationFactor: 0.5,
    });
    this.socket = socket;
    socket.on("connect", () => { if (this.device !== null) this.joinAll(); });
    socket.on("disconnect", (reason) => {
      for (const link of this.rooms.values()) link.lost(reason);
    });
    socket.on("connect_error", (err) => {
      this.log.info(`server connection failed: ${err.message}`);
      // A refusal in the server's connect handler (e.g. an expired token) is not retried by
      // the client: fetch a fresh token with the session cookie and try again.
      if (!socket.active) this.retryWithFreshToken();
    });
    for (const name of ROOM_NOTICES) {
      socket.on(name, (data) => {
        const link = data && typeof data.room === "string" ? this.rooms.get(data.room) : null;
        if (link) link.notice(name, data);
        else this.log.info(`${name} for a room this page is not in; ignored`);
      });
    }
  }

  /**
   * The device the rooms join with (registered to the account): they join now if connected.
   * @param {string} device
   */
  useDevice(device) {
    this.device = device;
    if (this.connected) this.joinAll();
  }

  get connected() {
    return Boolean(this.socket && this.socket.connected);
  }

  /**
   * Carry `link`'s room on this connection: joined now if connected, and on every connection.
   * @param {ServerLink} link
   */
  add(link) {
    if (link.left) return;
    this.rooms.set(link.room, link);
    if (!this.connected || this.device === null) return;
    if (link.room === this.shown) link.joinFirst().then(this.releaseShown);
    else this.joinAfterShown(link);
  }

  /**
   * A (re)connection: the shown room's join first, every other room's once it answered and
   * the shown room's links formed (`ServerLink.linked`). The other rooms' joins, and the
   * catch-up each starts, had the server busy while it relayed the shown room's offers and
   * answers: with a dozen rooms, the first link of a page took half a second more.
   */
  joinAll() {
    this.generation++;
    /** @type {() => void} */
    let release = () => {};
    this.shownJoined = new Promise((resolve) => { release = () => resolve(undefined); });
    this.releaseShown = release;
    const first = this.shown === null ? undefined : this.rooms.get(this.shown);
    if (this.shown === null) {
      release();
    } else {
      // Its link may still be opening (add() joins it then), or its answer slow: the other
      // rooms never wait for it long.
      if (first) first.joinFirst().then(release);
      setTimeout(release, SHOWN_FIRST_MAX_MS);
    }
    for (const link of this.rooms.values()) if (link !== first) this.joinAfterShown(link);
  }

  /**
   * Join `link` once the shown room's join has answered, on this connection only.
   * @param {ServerLink} link
   */
  joinAfterShown(link) {
    const generation = this.generation;
    this.shownJoined.then(() => {
      if (this.connected && generation === this.generation && this.rooms.get(link.room) === link) {
        link.join();
      }
    });
  }

  /**
   * Stop carrying `room` (its link says `leave` to the server first).
   * @param {string} room
   */
  remove(room) {
    this.rooms.delete(room);
    if (room === this.shown) this.shown = null;
  }

  async retryWithFreshToken() {
    try {
      await this.fetchToken();
    } catch (err) {
      this.log.warn(`could not refresh the token: ${err.message}`);
    }
    // Called from the socket's own connect_error handler: connect() made it.
    const socket = /** @type {Socket} */ (this.socket);
    setTimeout(() => { if (!socket.connected && !this.closed) socket.connect(); }, 2000);
  }

  /**
   * @param {string} event
   * @param {object} data
   * @returns {Promise<any>} the server's acknowledgement
   */
  call(event, data) {
    const socket = /** @type {Socket} */ (this.socket);
    return socket.timeout(CALL_TIMEOUT_MS).emitWithAck(event, data);
  }

  /** Disconnect for good (a page that did not get the device's lock): no connection after. */
  close() {
    this.closed = true;
    if (this.socket) this.socket.disconnect();
  }
}

/**
 * One room of the page on its connection (the twin of peer_agent/room_signaling.py): its
 * join, made again on every connection, handing the fresh roster to `onJoined` with the
 * generation `onJoining` gave when the join request went out (static/chat/roster.js); its
 * signals, uploads and reads; its leave. A room the server refuses stays refused (`refusal`)
 * while the others carry on.
 */
export class ServerLink {
  /**
   * @param {object} options
   * @param {ServerConnection | null} options.connection null: never joined (tests)
   * @param {string} options.room
   * @param {Record<string, (data: any) => void>} options.handlers
   * @param {(reply: any, generation: number) => Promise<void>} options.onJoined
   * @param {(up: boolean) => void} options.onLink
   * @param {() => number} [options.onJoining]
   * @param {(error: {code: string, message: string}) => void} [options.onRefused]
   * @param {(withinMs: number) => Promise<void>} [options.linked] settles once the room's
   *   peers are linked or have failed, or after withinMs (a shown room's, before the page's
   *   other rooms join)
   * @param {Console} [options.log]
   */
  constructor({ connection, room, handlers, onJoined, onLink, onJoining = () => 0,
                onRefused = () => {}, linked = () => Promise.resolve(), log = console }) {
    this.connection = connection;
    this.room = room;
    this.handlers = handlers; // {peer_joined, peer_left, signal, stored, removed}: (data) => void
    this.onJoined = onJoined;
    this.onJoining = onJoining; // () => the generation of the join request going out
    this.onLink = onLink;
    this.onRefused = onRefused;
    this.linked = linked;
    this.log = log;
    this.joined = false;
    this.everJoined = false;
    /** @type {{code: string, message: string} | null} why the server refused the last join */
    this.refusal = null;
    /** @type {Promise<void> | null} the join call under way, settled once it answered */
    this.joining = null;
    this.left = false;
    /** @type {() => void} */
    this.answered = () => {};
    /** Settles at the server's first answer to a join: joined or refused. */
    this.settled = new Promise((resolve) => { this.answered = () => resolve(undefined); });
  }

  /** The connection, which start() of the page's device made. */
  get conn() {
    return /** @type {ServerConnection} */ (this.connection);
  }

  /** Join on this connection and on every later one. */
  start() {
    if (this.connection) this.connection.add(this);
  }

  /**
   * A notice of the server for this room.
   * @param {string} name
   * @param {any} data
   */
  notice(name, data) {
    const handler = this.handlers[name];
    if (!handler || this.left) return;
    try {
      handler(data);
    } catch (err) {
      this.log.error(`handling ${name} from the server failed`, err);
    }
  }

  /**
   * The connection broke.
   * @param {string} reason
   */
  lost(reason) {
    if (this.joined) this.log.warn(`server link lost (${reason})`);
    this.joined = false;
    this.onLink(false);
  }

  /** Every device key of the room's members, to verify messages of authors who are offline. */
  async roomKeys() {
    const data = await this.conn.api("GET", `/api/rooms/${encodeURIComponent(this.room)}/keys`);
    return data.devices;
  }

  /**
   * Messages the server stored after cursor `after`: {messages, next}.
   * @param {number} after
   * @param {number} [limit]
   */
  history(after, limit = 500) {
    const query = `?after=${after}&limit=${limit}`;
    return this.conn.api("GET", `/api/rooms/${encodeURIComponent(this.room)}/messages${query}`);
  }

  /** Join, then wait a moment for the room's links: a shown room's (ServerConnection.joinAll). */
  async joinFirst() {
    await this.join();
    if (this.joined) await this.linked(LINKS_FIRST_MAX_MS);
  }

  async join() {
    if (this.left) return;
    /** @type {() => void} */
    let settle = () => {};
    this.joining = new Promise((resolve) => { settle = resolve; });
    try {
      await this.joinCall(settle);
    } finally {
      settle();
    }
  }

  /** @param {() => void} settle called once the server took the join */
  async joinCall(settle) {
    let reply;
    const generation = this.onJoining();
    try {
      reply = await this.conn.call("join", { room: this.room, device: this.conn.device });
    } catch (err) {
      this.log.warn(`join failed: ${err.message}`);
      return;
    }
    if (this.left) return;
    if (!reply.ok) {
      this.log.error(`the server refused to join ${this.room}`, reply.error);
      this.refusal = reply.error || { code: "refused", message: "the server refused the join" };
      this.answered();
      this.onRefused(/** @type {{code: string, message: string}} */ (this.refusal));
      return;
    }
    this.refusal = null;
    this.joined = true;
    settle();
    this.answered();
    this.everJoined = true;
    this.onLink(true);
    await this.onJoined(reply, generation);
  }

  /**
   * Relay a signal through the server; ServerError unless the server took it.
   * @param {string} to
   * @param {string} kind
   * @param {object} payload
   * @returns {Promise<void>}
   */
  async signal(to, kind, payload) {
    // A peer_joined (and the offer it set off) can overtake the reply to our own join: the
    // server has taken the join by then, so wait for the reply rather than fail the offer.
    if (!this.joined && this.joining) await this.joining;
    if (!this.joined) throw new ServerError("not connected to the server");
    const reply = await this.conn.call("signal", { room: this.room, to, kind, payload });
    if (!reply.ok) throw new ServerError(reply.error.message, reply.error.code);
  }

  /**
   * Upload envelopes; the per-envelope results, or null when the server is unreachable.
   * @param {object[]} envelopes
   * @returns {Promise<any[] | null>}
   */
  async publish(envelopes) {
    if (!this.joined || !envelopes.length) return null;
    let reply;
    try {
      reply = await this.conn.call("publish", { envelopes });
    } catch (err) {
      this.log.info(`upload failed, will retry: ${err.message}`);
      return null;
    }
    if (!reply.ok) {
      this.log.warn("upload refused", reply.error);
      return null;
    }
    return reply.results;
  }

  /** Leave the room: the server says so to its peers; the connection stays for the others. */
  async leave() {
    this.left = true;
    const wasJoined = this.joined;
    // A join still on its way is answered first: the server runs each event in a thread of
    // its own, so a leave sent now could be handled before it, and the join would stay.
    const inFlight = wasJoined ? null : this.joining;
    this.joined = false;
    if (!this.connection) return;
    this.connection.remove(this.room);
    if (inFlight) await inFlight;
    if ((wasJoined || inFlight) && this.connection.connected) {
      try {
        await this.connection.call("leave", { room: this.room });
      } catch (err) {
        this.log.info(`leaving ${this.room}: ${err.message}`);
      }
    }
  }
}
