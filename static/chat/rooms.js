// @ts-check
// The room list of the agent's page (static/chat.html) and of the browser peer's page
// (templates/room.html, over browser-device.js): every room of the device with its kind and
// unread count, the room shown highlighted; a form to join or create a room, one to open a
// direct message, and the topbar's "Leave". Choosing a room switches the chat view
// (ui.js, `openRoom`) without a reload. On a narrow screen the list is a panel that the
// topbar's "Rooms" button opens over the chat and choosing a room closes.
//
// Under them, the device's links: one peer connection per other device, whatever rooms the
// two share, each with the rooms it carries (GET /api/links).
//
// Unread counts are the agent's (GET /api/rooms, then its {type: "rooms"} events): the room
// shown is marked read when it is opened, and again whenever its count rises while the page
// is visible (which a message arriving in it no longer makes it do: the backend tells the
// agent, or the browser page's device, which room is on screen, and its messages are read as
// they come). Errors from the API are shown above the page, in the agent's words.
// User text only ever goes through textContent.

import { LINK_STATES } from "./network.js";
import { el } from "./dom.js";

/**
 * The agent's JSON API, or the browser page's own device.
 * @typedef {import("./agent-backend.js").AgentBackend | import("./browser-device.js").BrowserDevice}
 *   AgentBackend
 */
/**
 * Where the page's address keeps the room shown: after its `#` (the agent's page), or in its
 * path (the browser page's /rooms/<room>).
 * @typedef {{read(): string | null, write(room: string | null): void}} RoomAddress
 */
/** @typedef {import("./ui.js").ChatView} ChatView */
/** @typedef {{name: string, kind: string | null, unread: number, server: boolean}} RoomEntry */

/** @type {Record<string, string>} */
const KIND_LABELS = { public: "public", private: "private", direct: "direct" };
const MOST_SHOWN_UNREAD = 99;
// The device's links are read again this often while the page is visible (and soon after a
// change of the room list or the room shown's state), not pushed by the agent.
const LINKS_REFRESH_MS = 5000;
const LINKS_SOON_MS = 300;

/** The room named after the address's `#`. @type {RoomAddress} */
const HASH_ADDRESS = {
  read() {
    try {
      return decodeURIComponent(location.hash.slice(1)) || null;
    } catch {
      return null; // a malformed address: the first room is shown
    }
  },
  write(room) {
    history.replaceState(null, "", room === null ? location.pathname : `#${encodeURIComponent(room)}`);
  },
};

/**
 * @param {number} n
 */
function unreadText(n) {
  return n > MOST_SHOWN_UNREAD ? `${MOST_SHOWN_UNREAD}+` : String(n);
}

/**
 * The markup of the room list inside `panel`: heading, list, join form, direct form.
 * @param {HTMLElement} panel
 */
function buildRoomsPanel(panel) {
  const list = el("ul", { className: "room-list", id: "room-list" });
  const join = el("form", { className: "rooms-form", id: "join-form" });
  const joinRow = el("div", { className: "rooms-form-row" });
  joinRow.append(
    el("input", { id: "join-name", name: "name", required: true, maxlength: "64",
      autocomplete: "off", placeholder: "room name", spellcheck: "false" }),
    el("button", { type: "submit", className: "small" }, "Join"));
  const privateLabel = el("label", { className: "rooms-check" });
  privateLabel.append(el("input", { type: "checkbox", id: "join-private", name: "private" }),
    document.createTextNode(" private (new, members only)"));
  join.append(el("label", { for: "join-name" }, "Join or create a room"), joinRow, privateLabel);
  const direct = el("form", { className: "rooms-form", id: "dm-form" });
  const directRow = el("div", { className: "rooms-form-row" });
  directRow.append(
    el("input", { id: "dm-user", name: "user", required: true, maxlength: "64",
      autocomplete: "off", placeholder: "user name", spellcheck: "false" }),
    el("button", { type: "submit", className: "small" }, "Message"));
  direct.append(el("label", { for: "dm-user" }, "Direct message"), directRow);
  const links = el("section", { className: "device-links", "aria-labelledby": "device-links-heading" });
  links.append(el("h2", { id: "device-links-heading" }, "This device's links"),
    el("ul", { id: "device-links" }));
  panel.replaceChildren(el("h2", {}, "Rooms"), list, join, direct, links);
}

export class RoomList {
  /**
   * `view` is the page's ChatView, `backend` its AgentBackend.
   * @param {Document} doc
   * @param {AgentBackend} backend
   * @param {ChatView} view
   * @param {RoomAddress} [address]
   */
  constructor(doc, backend, view, address = HASH_ADDRESS) {
    this.doc = doc;
    this.address = address;
    this.backend = backend;
    this.view = view;
    /** @param {string} id */
    const byId = (id) => /** @type {HTMLElement} */ (doc.getElementById(id));
    this.panel = byId("rooms-panel");
    buildRoomsPanel(this.panel);
    this.list = byId("room-list");
    this.joinForm = byId("join-form");
    this.joinName = /** @type {HTMLInputElement} */ (byId("join-name"));
    this.joinPrivate = /** @type {HTMLInputElement} */ (byId("join-private"));
    this.directForm = byId("dm-form");
    this.directUser = /** @type {HTMLInputElement} */ (byId("dm-user"));
    this.errorBox = byId("rooms-error");
    this.errorText = byId("rooms-error-text");
    this.toggle = byId("rooms-toggle");
    this.toggleUnread = byId("rooms-toggle-unread");
    this.leaveButton = byId("leave-room");
    this.kindChip = byId("room-kind");
    this.body = byId("agent-body");
    /** @type {RoomEntry[]} as the agent last said */
    this.rooms = [];
    /** @type {Map<string, HTMLElement>} room -> its <li> in the list */
    this.entries = new Map();
    /** @type {string | null} */
    this.current = null;
    /** @type {Promise<void> | null} the mark-read call on its way, if any */
    this.reading = null;
    /** @type {Set<string>} direct rooms whose state was read for their other member */
    this.asked = new Set();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.linksTimer = null;
    view.titleOf = (state) => this.titleOf(state.room);
    // No room is shown until start() opens one: no live event of a room passes till then.
    backend.setRoom(null);
  }

  /** Read the room list, then open the room the address names (or the first one). */
  async start() {
    this.list.addEventListener("click", (e) => {
      const entry = /** @type {HTMLElement | null} */ (
        /** @type {Element} */ (e.target).closest("button.room-entry"));
      if (entry) this.choose(entry.dataset.room ?? null);
    });
    this.joinForm.addEventListener("submit", (e) => { e.preventDefault(); this.join(); });
    this.directForm.addEventListener("submit", (e) => { e.preventDefault(); this.direct(); });
    this.leaveButton.addEventListener("click", () => this.leave());
    const dismiss = /** @type {HTMLElement} */ (this.doc.getElementById("rooms-error-dismiss"));
    dismiss.addEventListener("click", () => this.showError(null));
    this.toggle.addEventListener("click", () => this.showPanel(!this.panelOpen()));
    this.doc.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.panelOpen() && this.current !== null) this.showPanel(false);
    });
    this.doc.addEventListener("visibilitychange", () => {
      this.render();
      this.markRead();
    });
    this.backend.subscribe((event) => {
      if (event.type === "rooms") this.update(event.rooms);
      if (event.type === "rooms" || event.type === "state") this.readLinksSoon();
    });
    setInterval(() => { if (!this.doc.hidden) this.readLinks(); }, LINKS_REFRESH_MS);
    this.update(await this.backend.rooms(), false);
    this.view.bind();
    const asked = this.address.read();
    const first = this.rooms.some((r) => r.name === asked) ? asked : this.rooms[0]?.name;
    await this.open(first ?? null);
  }

  // -- showing -----------------------------------------------------------------------------

  /**
   * What a room is called on the page: `#name`, or `@user` for a direct message.
   * @param {string} name
   */
  titleOf(name) {
    const described = this.backend.described.get(name);
    const entry = this.rooms.find((r) => r.name === name);
    const kind = entry?.kind ?? described?.kind;
    if (kind !== "direct") return "#" + name;
    const me = this.backend.user;
    const others = me === null ? [] : (described?.members || []).filter((m) => m !== me);
    if (others.length) return "@" + others.join(", @");
    if (!this.asked.has(name)) {
      // Its state (with its members) has not come by yet: read it once.
      this.asked.add(name);
      this.backend.stateOf(name).then(() => this.render(), () => {});
    }
    return "direct message";
  }

  /**
   * Take the agent's room list; `follow`: leave a room shown that is no longer on it.
   * @param {unknown} rooms untrusted: the agent's JSON
   * @param {boolean} [follow]
   */
  update(rooms, follow = true) {
    this.rooms = Array.isArray(rooms) ? rooms : [];
    this.render();
    if (follow && this.current !== null && !this.rooms.some((r) => r.name === this.current)) {
      // Left from elsewhere (another page, or removed by its owner).
      this.open(this.rooms[0]?.name ?? null);
      return;
    }
    this.markRead();
  }

  /** Show the list as the agent last gave it. Entries are updated in place, not rebuilt: a
   * click must not fall between two nodes while messages keep changing the counts. */
  render() {
    const visible = !this.doc.hidden;
    let elsewhere = 0;
    const items = this.rooms.map((room) => {
      const shown = room.name === this.current;
      const unread = shown && visible ? 0 : Number(room.unread) || 0;
      if (!shown) elsewhere += unread;
      const li = this.entries.get(room.name) || this.entry(room.name);
      const button = /** @type {HTMLElement} */ (li.firstChild);
      button.dataset.kind = room.kind || "";
      button.dataset.server = room.server ? "yes" : "no";
      if (shown) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
      const [name, kind, badge] = /** @type {HTMLElement[]} */ ([...button.children]);
      name.textContent = this.titleOf(room.name);
      kind.textContent = room.kind ? KIND_LABELS[room.kind] || room.kind : "";
      badge.textContent = unreadText(unread);
      badge.hidden = unread === 0;
      if (unread) badge.setAttribute("aria-label", `${unread} unread`);
      else badge.removeAttribute("aria-label");
      return li;
    });
    const names = new Set(this.rooms.map((r) => r.name));
    for (const name of [...this.entries.keys()]) {
      if (!names.has(name)) this.entries.delete(name);
    }
    if (!items.length) items.push(el("li", { className: "room-list-empty" }, "No rooms yet."));
    const same = items.length === this.list.children.length
      && items.every((li, i) => this.list.children[i] === li);
    if (!same) this.list.replaceChildren(...items);
    this.toggleUnread.textContent = unreadText(elsewhere);
    this.toggleUnread.hidden = elsewhere === 0;
    this.doc.title = elsewhere ? `(${unreadText(elsewhere)}) Gibberish` : "Gibberish";
    const current = this.rooms.find((r) => r.name === this.current);
    this.leaveButton.hidden = !current;
    this.kindChip.hidden = !current || !current.kind || current.kind === "public";
    this.kindChip.textContent = current && current.kind ? KIND_LABELS[current.kind] || current.kind : "";
    if (this.current !== null && this.view.roomTitle) {
      this.view.roomTitle.textContent = this.titleOf(this.current);
    }
  }

  /**
   * A new entry of the list: the room's button with its name, kind and unread badge.
   * @param {string} room
   */
  entry(room) {
    const button = el("button", { type: "button", className: "room-entry" });
    button.dataset.room = room;
    button.title = room;
    button.append(el("span", { className: "room-name" }), el("span", { className: "room-kind" }),
      el("span", { className: "unread" }));
    const li = el("li");
    li.append(button);
    this.entries.set(room, li);
    return li;
  }

  readLinksSoon() {
    if (this.linksTimer) return;
    this.linksTimer = setTimeout(() => { this.linksTimer = null; this.readLinks(); }, LINKS_SOON_MS);
  }

  /** Read and show the device's links (kept as they were if the agent does not answer). */
  async readLinks() {
    let links;
    try {
      links = await this.backend.links();
    } catch {
      return; // the agent is restarting: the next read shows them
    }
    const items = links.map((/** @type {any} */ link) => {
      const li = el("li", { className: "device-link" });
      li.dataset.device = link.device;
      li.dataset.state = link.state;
      const rtt = link.state === "connected" && Number.isFinite(link.rtt_ms)
        ? ` · ${link.rtt_ms.toFixed(1)} ms` : "";
      const state = /** @type {Record<string, {label: string}>} */ (LINK_STATES)[link.state];
      const head = el("div", { className: "device-link-head" });
      head.append(el("span", { className: "member-name" }, link.user),
        el("span", { className: "link-state " + link.state },
          (state ? state.label : link.state) + rtt));
      const rooms = (link.rooms || []).map((/** @type {string} */ r) => this.titleOf(r));
      li.append(head, el("span", { className: "device-link-rooms" },
        rooms.length ? rooms.join(", ") : "no room in common"));
      return li;
    });
    if (!items.length) items.push(el("li", { className: "room-list-empty" }, "No other device yet."));
    /** @type {HTMLElement} */ (this.doc.getElementById("device-links")).replaceChildren(...items);
  }

  panelOpen() {
    return this.body.dataset.rooms === "open";
  }

  /**
   * Open or close the room list (a panel over the chat on narrow screens only).
   * @param {boolean} open
   */
  showPanel(open) {
    this.body.dataset.rooms = open ? "open" : "closed";
    this.toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  /**
   * Say what went wrong above the page, until dismissed or the next action.
   * @param {Error | null} err
   */
  showError(err) {
    this.errorText.textContent = err ? err.message : "";
    this.errorBox.hidden = !err;
  }

  // -- acting ------------------------------------------------------------------------------

  /**
   * A room chosen in the list: show it, and close the panel on a narrow screen.
   * @param {string | null} room
   */
  choose(room) {
    this.showPanel(false);
    if (room !== this.current) this.open(room);
  }

  /**
   * Show `room` (null: none) in the chat view, and mark it read.
   * @param {string | null} room
   */
  async open(room) {
    this.current = room;
    this.address.write(room);
    this.render();
    if (room === null) this.showPanel(true);
    this.markRead();
    try {
      await this.view.openRoom(room);
    } catch (err) {
      if (this.current === room) this.showError(err);
    }
  }

  /** Mark the room shown read if the agent counts anything unread in it and the page is
   * seen. One call at a time; a count that rose meanwhile is read again after it. */
  markRead() {
    const room = this.current;
    if (room === null || this.doc.hidden || this.reading) return;
    const entry = this.rooms.find((r) => r.name === room);
    if (!entry || !entry.unread) return;
    const rooms = this.rooms;
    this.reading = this.backend.markRead(room).then(
      () => {
        this.reading = null;
        // Nothing newer heard: the count is 0 now (the agent's event says so too).
        if (this.rooms === rooms) entry.unread = 0;
        this.markRead();
      },
      () => { this.reading = null; }); // left meanwhile: the room list follows
  }

  async join() {
    const name = this.joinName.value.trim();
    if (!name) return;
    await this.act(async () => {
      const state = await this.backend.join(name, this.joinPrivate.checked);
      this.joinName.value = "";
      this.joinPrivate.checked = false;
      return state.room;
    });
  }

  async direct() {
    const user = this.directUser.value.trim();
    if (!user) return;
    await this.act(async () => {
      const state = await this.backend.direct(user);
      this.directUser.value = "";
      return state.room;
    });
  }

  async leave() {
    const room = this.current;
    if (room === null) return;
    await this.act(async () => {
      await this.backend.leave(room);
      /** @type {RoomEntry[]} */
      const rooms = await this.backend.rooms();
      const rest = rooms.filter((r) => r.name !== room);
      return rest[0]?.name ?? null;
    });
  }

  /**
   * Run one room action (its errors shown), then show the room it names.
   * @param {() => Promise<string | null>} action
   */
  async act(action) {
    this.showError(null);
    let room;
    try {
      room = await action();
      this.update(await this.backend.rooms(), false);
    } catch (err) {
      this.showError(err);
      return;
    }
    this.showPanel(false);
    if (room !== this.current) await this.open(room);
    else if (room === null) this.showPanel(true);
  }
}
