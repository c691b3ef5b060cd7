// The backend of the chat UI when it is served by the user's own peer agent: the agent's
// JSON API and its WebSocket of live events (same origin only). One agent serves every room
// of the device: this backend shows one room at a time (`room`; null until the agent names its
// first), passes it with every call and lets through only that room's live events.

export class AgentBackend {
  constructor(base = "") {
    this.base = base;
    this.listeners = [];
    this.retry = 500;
    this.room = null;
  }

  /** `path` with this backend's room added to its query. */
  inRoom(path) {
    if (this.room === null) return path;
    const sep = path.includes("?") ? "&" : "?";
    return `${path}${sep}room=${encodeURIComponent(this.room)}`;
  }

  async json(path, init) {
    const reply = await fetch(this.base + path, init);
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) {
      throw new Error(body.error ? body.error.message : `HTTP ${reply.status}`);
    }
    return body;
  }

  state() { return this.json(this.inRoom("/api/state")); }

  /** Up to `limit` messages before the page token `before` (the newest without one). */
  messages(before, limit = 50) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set("before", before);
    if (this.room !== null) query.set("room", this.room);
    return this.json(`/api/messages?${query}`);
  }

  /** The agent's recent events, oldest first: {events: [...]}. */
  events() { return this.json(this.inRoom("/api/events")); }

  /** How one message travelled: {id, steps: [...]}. */
  path(id) { return this.json(this.inRoom(`/api/messages/${encodeURIComponent(id)}/path`)); }

  async send(text) {
    const body = await this.json("/api/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(this.room === null ? { text } : { text, room: this.room }),
    });
    return body.message;
  }

  emit(event) {
    if (event.room !== undefined && event.room !== null) {
      if (this.room === null && event.type === "state") this.room = event.room;
      if (event.room !== this.room) return;
    }
    for (const listener of this.listeners) listener(event);
  }

  subscribe(listener) {
    this.listeners.push(listener);
    if (this.listeners.length === 1) this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    ws.addEventListener("open", () => {
      this.retry = 500;
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
      // The agent restarted or the page slept: reconnect, then refresh the state.
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 5000);
    });
  }
}
