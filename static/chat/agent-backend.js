// @ts-check
// The backend of the chat UI when it is served by the user's own peer agent: the agent's
// JSON API and its WebSocket of live events (same origin only). One agent serves every room
// of the device: this backend shows one room at a time (`room`; null until the page or the
// agent names one), passes it with every call and lets through only that room's live events,
// and the room list's events ({type: "rooms"}) whatever the room.
//
// It tells the agent on the WebSocket which room the page reads: {type: "reading", room} for
// the room shown while the page is in view, room null while it is hidden. The agent does not
// count a message unread in a room being read (peer_agent/readers.py), so the room list
// (rooms.js) has nothing to mark read as each message comes.

/** @typedef {Record<string, any>} LiveEvent a live event of the agent (JSON, untyped) */

export class AgentBackend {
  constructor(base = "") {
    this.base = base;
    /** @type {((event: LiveEvent) => void)[]} */
    this.listeners = [];
    this.retry = 500;
    /** @type {string | null} */
    this.room = null;
    this.opened = false;
    // Once the page has chosen a room (setRoom), a state event no longer picks one for it.
    this.chosen = false;
    // What the last state of each room said of it, live events of every room included:
    // room -> {kind, members}. The room list names a direct room after the other member.
    /** @type {Map<string, {kind: string, members: string[] | null}>} */
    this.described = new Map();
    /** @type {string | null} the agent's user, from the first state read */
    this.user = null;
    /** @type {WebSocket | null} the socket of live events, while it is open */
    this.socket = null;
    /** @type {string | null | undefined} the room the agent was last told (undefined: none
     * told on this socket yet) */
    this.told = undefined;
    globalThis.document?.addEventListener("visibilitychange", () => this.tellReading());
  }

  /**
   * Show `room` from now on (null: none): calls name it, and only its live events pass.
   * @param {string | null} room
   */
  setRoom(room) {
    this.room = room;
    this.chosen = true;
    this.tellReading();
  }

  /** Tell the agent which room this page reads, if that changed: the room shown while the
   * page is in view, else none. Told again on each new socket. */
  tellReading() {
    const room = globalThis.document?.hidden ? null : this.room;
    if (this.socket === null || room === this.told) return;
    this.socket.send(JSON.stringify({ type: "reading", room }));
    this.told = room;
  }

  /**
   * `path` with this backend's room added to its query.
   * @param {string} path
   */
  inRoom(path) {
    if (this.room === null) return path;
    const sep = path.includes("?") ? "&" : "?";
    return `${path}${sep}room=${encodeURIComponent(this.room)}`;
  }

  /**
   * The JSON body of the agent's answer to `path`; an Error with the agent's message if it
   * refused.
   * @param {string} path
   * @param {RequestInit} [init]
   * @returns {Promise<any>}
   */
  async json(path, init) {
    const reply = await fetch(this.base + path, init);
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) {
      throw new Error(body.error ? body.error.message : `HTTP ${reply.status}`);
    }
    return body;
  }

  /**
   * @param {string} path
   * @param {object} body
   */
  post(path, body) {
    return this.json(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  state() { return this.json(this.inRoom("/api/state")).then((s) => this.remember(s)); }

  /**
   * Up to `limit` messages before the page token `before` (the newest without one).
   * @param {string | null} [before]
   * @param {number} [limit]
   */
  messages(before, limit = 50) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set("before", before);
    if (this.room !== null) query.set("room", this.room);
    return this.json(`/api/messages?${query}`);
  }

  /** The agent's recent events, oldest first: {events: [...]}. */
  events() { return this.json(this.inRoom("/api/events")); }

  /**
   * How one message travelled: {id, steps: [...]}.
   * @param {string} id
   */
  path(id) { return this.json(this.inRoom(`/api/messages/${encodeURIComponent(id)}/path`)); }

  /**
   * @param {string} text
   */
  async send(text) {
    const body = await this.post("/api/messages",
      this.room === null ? { text } : { text, room: this.room });
    return body.message;
  }

  // -- the rooms of the device -------------------------------------------------------------

  /** The rooms joined, in the order joined: [{name, kind, unread, server}]. */
  async rooms() { return (await this.json("/api/rooms")).rooms; }

  /**
   * Join a room, or create it private; the room's state.
   * @param {string} name
   * @param {boolean} isPrivate
   */
  join(name, isPrivate) {
    return this.post("/api/rooms", { name, private: isPrivate }).then((s) => this.remember(s));
  }

  /**
   * Open the direct-message room with `user`; its state.
   * @param {string} user
   */
  direct(user) { return this.post("/api/dm", { user }).then((s) => this.remember(s)); }

  /**
   * @param {string} room
   */
  leave(room) {
    this.described.delete(room);
    return this.json(`/api/rooms/${encodeURIComponent(room)}`, { method: "DELETE" });
  }

  /** The device's peer connections, one per other device: [{user, device, state, rtt_ms,
   * rooms}]. */
  async links() { return (await this.json("/api/links")).links; }

  /**
   * Mark everything in `room` read.
   * @param {string} room
   */
  markRead(room) { return this.post(`/api/rooms/${encodeURIComponent(room)}/read`, {}); }

  /**
   * The state of `room`, whichever room is shown.
   * @param {string} room
   */
  stateOf(room) {
    return this.json(`/api/state?room=${encodeURIComponent(room)}`).then((s) => this.remember(s));
  }

  /**
   * Note what a state says of the user and of its room; the state, unchanged.
   * @param {any} state
   */
  remember(state) {
    if (state && typeof state.user === "string") this.user = state.user;
    if (state && typeof state.room === "string") {
      this.described.set(state.room, { kind: state.kind, members: state.members });
    }
    return state;
  }

  // -- live events -------------------------------------------------------------------------

  /**
   * @param {LiveEvent} event
   */
  emit(event) {
    if (event.type === "state") this.remember(event.state);
    if (event.room !== undefined && event.room !== null) {
      if (this.room === null && !this.chosen && event.type === "state") {
        this.room = event.room;
        this.tellReading();
      }
      if (event.room !== this.room) return;
    }
    for (const listener of this.listeners) listener(event);
  }

  /**
   * @param {(event: LiveEvent) => void} listener
   */
  subscribe(listener) {
    this.listeners.push(listener);
    if (this.listeners.length === 1) this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    ws.addEventListener("open", () => {
      this.retry = 500;
      this.socket = ws;
      this.told = undefined;
      this.tellReading();
      // Events may have happened while the socket was down: the view fetches them again.
      if (this.opened) this.emit({ type: "reconnected" });
      this.opened = true;
    });
    ws.addEventListener("message", (e) => {
      // The events of one turn of the agent's loop may come in one frame.
      const data = JSON.parse(e.data);
      for (const event of data.type === "batch" ? data.events : [data]) this.emit(event);
    });
    ws.addEventListener("close", () => {
      if (this.socket === ws) this.socket = null;
      // The agent restarted or the page slept: reconnect, then refresh the state.
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 5000);
    });
  }
}
