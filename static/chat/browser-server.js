// @ts-check
// The browser peer's link to the server: a bearer token got with the page's session cookie,
// the JSON API, and Socket.IO (the official client, served from static/vendor/) for presence,
// signals and log uploads. The JavaScript twin of peer_agent/signaling_client.py.

import { io } from "../vendor/socket.io.esm.min.js";

/** @typedef {import("../vendor/socket.io.esm.min.js").Socket} Socket */

const CALL_TIMEOUT_MS = 10000;

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
 * Owns the token and the Socket.IO connection for one room of one device. The client
 * reconnects by itself with jittered backoff (0.5 s doubling to 10 s); every (re)connection
 * joins the room again and hands the fresh roster to `onJoined`, with the generation
 * `onJoining` gave when the join request went out (static/chat/roster.js).
 */
export class ServerLink {
  /**
   * @param {object} options
   * @param {string} options.room
   * @param {string} options.csrfToken
   * @param {Record<string, (data: any) => void>} options.handlers
   * @param {(reply: any, generation: number) => Promise<void>} options.onJoined
   * @param {(up: boolean) => void} options.onLink
   * @param {() => number} [options.onJoining]
   * @param {Console} [options.log]
   */
  constructor({ room, csrfToken, handlers, onJoined, onLink, onJoining = () => 0,
                log = console }) {
    this.room = room;
    this.csrfToken = csrfToken;
    this.handlers = handlers; // {peer_joined, peer_left, signal, stored}: (data) => void
    this.onJoined = onJoined;
    this.onJoining = onJoining; // () => the generation of the join request going out
    this.onLink = onLink;
    this.log = log;
    /** @type {string | null} */
    this.token = null;
    /** @type {string | null} */
    this.user = null;
    /** @type {string | null} */
    this.device = null;
    this.joined = false;
    this.everJoined = false;
    /** @type {Promise<void> | null} the join call under way, settled once it answered */
    this.joining = null;
    /** @type {Socket | null} */
    this.socket = null;
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

  /** Every device key of the room's members, to verify messages of authors who are offline. */
  async roomKeys() {
    const data = await this.api("GET", `/api/rooms/${encodeURIComponent(this.room)}/keys`);
    return data.devices;
  }

  /**
   * Messages the server stored after cursor `after`: {messages, next}.
   * @param {number} after
   * @param {number} [limit]
   */
  history(after, limit = 500) {
    const query = `?after=${after}&limit=${limit}`;
    return this.api("GET", `/api/rooms/${encodeURIComponent(this.room)}/messages${query}`);
  }

  /**
   * Connect and keep connecting; join the room on every connection.
   * @param {string} device
   */
  start(device) {
    this.device = device;
    const socket = io({
      transports: ["websocket"],
      // A function, so that every reconnection presents the current token.
      auth: (cb) => cb({ token: this.token }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 10000,
      randomizationFactor: 0.5,
    });
    this.socket = socket;
    socket.on("connect", () => { this.join(); });
    socket.on("disconnect", (reason) => {
      if (this.joined) this.log.warn(`server link lost (${reason})`);
      this.joined = false;
      this.onLink(false);
    });
    socket.on("connect_error", (err) => {
      this.log.info(`server connection failed: ${err.message}`);
      // A refusal in the server's connect handler (e.g. an expired token) is not retried by
      // the client: fetch a fresh token with the session cookie and try again.
      if (!socket.active) this.retryWithFreshToken();
    });
    for (const [name, handler] of Object.entries(this.handlers)) {
      socket.on(name, (data) => {
        if (!data || data.room !== this.room) return;
        try {
          handler(data);
        } catch (err) {
          this.log.error(`handling ${name} from the server failed`, err);
        }
      });
    }
  }

  async retryWithFreshToken() {
    try {
      await this.fetchToken();
    } catch (err) {
      this.log.warn(`could not refresh the token: ${err.message}`);
    }
    // Called from the socket's own connect_error handler: start() made it.
    const socket = /** @type {Socket} */ (this.socket);
    setTimeout(() => { if (!socket.connected) socket.connect(); }, 2000);
  }

  async join() {
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
      reply = await this.call("join", { room: this.room, device: this.device });
    } catch (err) {
      this.log.warn(`join failed: ${err.message}`);
      return;
    }
    if (!reply.ok) {
      this.log.error(`the server refused to join ${this.room}`, reply.error);
      return;
    }
    this.joined = true;
    settle();
    this.everJoined = true;
    this.onLink(true);
    await this.onJoined(reply, generation);
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
    const reply = await this.call("signal", { room: this.room, to, kind, payload });
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
      reply = await this.call("publish", { envelopes });
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

  close() {
    if (this.socket) this.socket.disconnect();
  }
}
