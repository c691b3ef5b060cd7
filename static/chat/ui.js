// @ts-check
// The chat UI, shared by the agent's page (static/chat.html) and the browser peer
// (templates/room.html). It builds its own markup inside a root element, so both pages show
// the same thing, and talks to a "backend":
//   { state(), messages(before, limit), send(text), subscribe(onEvent), events(), path(id) }
// served by the agent's JSON API (agent-backend.js) or by the browser peer (browser-peer.js).
// A backend with a `setRoom(room)` can be switched to another room with `openRoom(room)`:
// the view empties and reads that room afresh (the agent page's room list, rooms.js).
// Beside the chat sits the Network panel (network.js, docs/network-view.md); on a narrow
// screen the "Chat" and "Network" tabs switch between the two.
// The markup is chat-layout.js's, the drawing of one message message-item.js's, the member
// list and banner members.js's; ChatView here wires them: it schedules the drawing in
// frames, scrolls, runs the composer and reads the backend's pages, state and events.
// User text only ever goes through textContent.

import { MessageWindow, tokenOf, WINDOW } from "./message-window.js";
import { buildChatLayout } from "./chat-layout.js";
import { fillDelivery, laterDelivery, renderMessage, togglePath } from "./message-item.js";
import { drawBanner, drawMembers, membersKey } from "./members.js";
import { buildNetworkPanel, NetworkView } from "./network.js";
import { timing } from "./timing.js";

export { buildChatLayout };

/** @typedef {import("./message-window.js").Message} Message */
/** @typedef {import("./message-item.js").Delivery} Delivery */
/**
 * What the view asks of its backend (agent-backend.js, or browser-peer.js); replies are the
 * backend's JSON, read as it comes. `room` and `setRoom` only where `openRoom` is used.
 * @typedef {{
 *   state(): Promise<any>,
 *   messages(before: string | null, limit?: number): Promise<any>,
 *   send(text: string): Promise<any>,
 *   subscribe(listener: (event: any) => void): void,
 *   events?: () => Promise<any>,
 *   path?: (id: string) => Promise<any>,
 *   room?: string | null,
 *   setRoom?: (room: string | null) => void,
 * }} Backend
 */

// Round-trip times are measured every couple of seconds but only pushed with the next state
// change: the state is read again this often, while the page is visible, to keep them fresh.
const STATE_REFRESH_MS = 5000;
// Messages read per page when the reader scrolls back, and how close to the top (px) a
// scroll reads the next one.
const OLDER_PAGE = 100;
const OLDER_MARGIN_PX = 200;
// How near the end (px) the reader counts as at the newest messages, which then stay in view.
const STICK_MARGIN_PX = 80;
// A frame's work runs at the next animation frame, or after this long in a hidden page
// (which gets no frames).
const FRAME_FALLBACK_MS = 100;
// Delivery marks are not worth a frame each: they are drawn at most this often, in the frame
// after (several echoes' worth at once in a busy room).
const SLOW_LANE_MS = 100;
// The side panel's news (the timeline's events, the outbox count) at most this often: a new event at the timeline's top moves every one below it, and a frame drawn
// just as the next message comes in holds that message up (bench.browser's spaced echo:
// 22-31 ms at the median with these on the 100 ms lane, 12-15 with the timeline not drawn).
const PANEL_LANE_MS = 1000;

/**
 * Run `work` once, at the next animation frame or after FRAME_FALLBACK_MS, whichever comes
 * first.
 * @param {() => void} work
 */
function nextFrame(work) {
  let done = false;
  const run = () => {
    if (done) return;
    done = true;
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    work();
  };
  const frame = requestAnimationFrame(run);
  const timer = setTimeout(run, FRAME_FALLBACK_MS);
}

/**
 * What of the server link is drawn at the next frame (the rest of the banner can wait).
 * @param {any} server the state's server part
 */
function linkKey(server) {
  return JSON.stringify([server.connected, server.state]);
}

/** Work not worth a frame of its own: asked for any number of times, it is due in the frame
 * after `ms` (one timer at a time). */
class Lane {
  /**
   * @param {number} ms
   * @param {() => void} frame asks for the frame
   */
  constructor(ms, frame) {
    this.ms = ms;
    this.frame = frame;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.due = false;
  }

  request() {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.due = true;
      this.frame();
    }, this.ms);
  }

  /** Whether the lane's work is due in this frame (it is then no longer). */
  take() {
    const due = this.due;
    this.due = false;
    return due;
  }
}

export class ChatView {
  /**
   * @param {Document} doc
   * @param {Backend} backend
   * @param {HTMLElement} [root] where the chat's markup goes
   */
  constructor(doc, backend, root = /** @type {HTMLElement} */ (doc.getElementById("chat"))) {
    buildChatLayout(root);
    /** @param {string} id */
    const byId = (id) => /** @type {HTMLElement} */ (doc.getElementById(id));
    this.root = root;
    this.backend = backend;
    this.list = /** @type {HTMLOListElement} */ (byId("messages"));
    this.scroller = byId("chat-scroll");
    this.empty = byId("empty-chat");
    this.members = byId("members");
    this.banner = byId("server-banner");
    this.older = /** @type {HTMLButtonElement} */ (byId("load-older"));
    this.form = /** @type {HTMLFormElement} */ (byId("composer"));
    this.text = /** @type {HTMLTextAreaElement} */ (byId("composer-text"));
    this.error = byId("composer-error");
    // Not on every page: the agent page's topbar has them, the browser peer's has its own.
    this.roomTitle = doc.getElementById("room-title");
    this.whoami = doc.getElementById("whoami");
    this.layout = byId("chat-layout");
    this.tabs = { chat: byId("tab-chat"), network: byId("tab-network") };
    this.network = new NetworkView(byId("network"));
    this.messages = new MessageWindow(this.list, renderMessage);
    /** @type {string | null} */
    this.olderToken = null;
    /** @type {Promise<void> | null} */
    this.loadingOlder = null;
    // Bumped whenever the view starts showing another room: a reply asked for before that
    // belongs to the room left and is dropped.
    this.generation = 0;
    /** @type {Map<string, string>} room -> the composer's text left there */
    this.drafts = new Map();
    /** @type {(state: any) => string} what the page calls the room a state is of */
    this.titleOf = (state) => "#" + state.room;
    /** @type {number | undefined} when the backend's process started, as its state said */
    this.startedAt = undefined;
    // Drawing is coalesced to one pass per animation frame: the newest state waiting to be
    // drawn, whether the list is to be scrolled to its end, and whether a frame is asked for.
    /** @type {any} */
    this.stateToDraw = null;
    /** @type {Set<string>} ids of shown messages whose delivery mark moved */
    this.deliveriesToDraw = new Set();
    /** @type {any[]} events for the Network panel's timeline */
    this.eventsToDraw = [];
    this.slow = new Lane(SLOW_LANE_MS, () => this.requestFrame());
    this.panel = new Lane(PANEL_LANE_MS, () => this.requestFrame());
    this.scrollPending = false;
    this.scrollCheck = false;
    this.ownScroll = false;
    this.framePending = false;
    /** What the member list, the banner and the network view last drew, as keys. */
    this.drawn = { members: "", banner: "", network: "", link: "" };
    // Whether the end of the list is in view (or near), as an IntersectionObserver says.
    this.atEnd = true;
    const end = byId("chat-end");
    new IntersectionObserver((entries) => {
      for (const entry of entries) this.atEnd = entry.isIntersecting;
    }, { root: this.scroller, rootMargin: `0px 0px ${STICK_MARGIN_PX}px 0px` }).observe(end);
  }

  /** Ask for one drawing pass at the next frame (once, however often asked meanwhile). */
  requestFrame() {
    if (this.framePending) return;
    this.framePending = true;
    nextFrame(() => this.drawFrame());
  }

  drawFrame() {
    this.framePending = false;
    const t0 = timing.now();
    const slowDue = this.slow.take();
    const panelDue = this.panel.take();
    const state = this.stateToDraw;
    if (state && (panelDue || !state.server || !Array.isArray(state.peers)
                  || this.changesAtOnce(state))) {
      this.stateToDraw = null;
      this.drawState(state);
    }
    if (slowDue) {
      for (const id of this.deliveriesToDraw) {
        const known = this.messages.get(id);
        if (known) fillDelivery(known.node, known.message.delivery);
      }
      this.deliveriesToDraw.clear();
    }
    if (panelDue) {
      const events = this.eventsToDraw;
      this.eventsToDraw = [];
      for (const event of events) this.network.addEvent(event);
      if (events.length && this.layout.dataset.tab !== "network") {
        this.tabs.network.dataset.unseen = "yes";
      }
    }
    if (this.scrollPending) {
      this.scrollPending = false;
      this.scrollToEnd();
    }
    if (this.scrollCheck) {
      this.scrollCheck = false;
      if (this.olderToken && this.scroller.scrollTop < OLDER_MARGIN_PX) this.loadOlder();
    }
    timing.measure("frame: member list, banner, network view, delivery marks, timeline, scroll "
      + "(ChatView.drawFrame)", t0);
  }

  /**
   * Show the chat or the Network panel (only matters on narrow screens, see style.css).
   * @param {string} name
   */
  showTab(name) {
    this.layout.dataset.tab = name;
    for (const [tab, button] of Object.entries(this.tabs)) {
      button.setAttribute("aria-selected", tab === name ? "true" : "false");
    }
    if (name === "network") this.tabs.network.removeAttribute("data-unseen");
    else this.scrollToEnd();
  }

  /** Wire the page's controls and live events, then read the backend's room. */
  async start() {
    this.bind();
    await this.load(this.generation);
  }

  /** Wire the page's controls, the live events and the periodic state refresh. */
  bind() {
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.submit(); }
    });
    this.text.addEventListener("input", () => this.fitComposer());
    this.older.addEventListener("click", () => this.loadOlder());
    // Whether the reader came near the top is read in the next frame, where the layout is
    // worked out anyway, not in the scroll event (which would force it mid-task).
    this.scroller.addEventListener("scroll", () => {
      const own = this.ownScroll;
      this.ownScroll = false;
      if (own || !this.olderToken) return;
      this.scrollCheck = true;
      this.requestFrame();
    }, { passive: true });
    for (const [name, button] of Object.entries(this.tabs)) {
      button.addEventListener("click", () => this.showTab(name));
    }
    this.list.addEventListener("click", (e) => {
      const button = /** @type {Element} */ (e.target).closest("button.path-toggle");
      const li = button && /** @type {HTMLElement | null} */ (button.closest(".message"));
      if (li) togglePath(li, this.backend);
    });
    this.backend.subscribe((event) => this.onEvent(event));
    setInterval(() => this.refreshState(), STATE_REFRESH_MS);
  }

  /**
   * Read the backend's room: its state, its newest messages, then its events.
   * @param {number} generation
   */
  async load(generation) {
    const state = await this.backend.state();
    if (generation !== this.generation) return;
    this.renderState(state);
    const page = await this.backend.messages(null, WINDOW);
    if (generation !== this.generation) return;
    this.setOlder(page.older);
    this.addMessages(page.messages, true);
    this.scrollToEnd();
    this.loadEvents();
  }

  /**
   * Show another room of the backend (null: none, with `emptyText` said instead) without a
   * reload: the messages, members, Network panel and composer start empty and are read
   * afresh; replies still on their way for the room left are dropped. The composer's text is
   * kept per room.
   * @param {string | null} room
   * @param {string} [emptyText]
   */
  async openRoom(room, emptyText = "You are in no room yet: join or create one.") {
    if (!this.backend.setRoom) throw new Error("this backend shows one room only");
    const left = this.backend.room;
    if (left != null && this.text.value) this.drafts.set(left, this.text.value);
    else if (left != null) this.drafts.delete(left);
    this.backend.setRoom(room);
    this.generation += 1;
    this.clear();
    this.text.value = room === null ? "" : this.drafts.get(room) || "";
    this.fitComposer();
    this.form.hidden = room === null;
    this.root.toggleAttribute("data-no-room", room === null);
    if (room === null) {
      this.empty.textContent = emptyText;
      this.empty.hidden = false;
      if (this.roomTitle) this.roomTitle.textContent = "";
      return;
    }
    this.empty.textContent = "No messages yet. Say hello!";
    await this.load(this.generation);
  }

  /** Empty every part that shows one room. */
  clear() {
    this.list.replaceChildren();
    this.messages = new MessageWindow(this.list, renderMessage);
    this.setOlder(null);
    this.loadingOlder = null;
    this.members.replaceChildren();
    this.error.hidden = true;
    this.empty.hidden = true;
    this.banner.hidden = true;
    const panel = buildNetworkPanel(document);
    this.network.panel.replaceWith(panel);
    this.network = new NetworkView(panel);
    this.tabs.network.removeAttribute("data-unseen");
    // The rooms of one agent start at different times: no "restarted" for a new room.
    this.startedAt = undefined;
    this.stateToDraw = null;
    this.deliveriesToDraw.clear();
    this.eventsToDraw = [];
    this.drawn = { members: "", banner: "", network: "", link: "" };
  }

  async refreshState() {
    if (document.hidden) return;
    const generation = this.generation;
    try {
      const state = await this.backend.state();
      if (generation === this.generation) this.renderState(state);
    } catch {
      // The agent is restarting; its WebSocket brings the state back when it returns.
    }
  }

  async loadEvents() {
    const network = this.network;
    if (typeof this.backend.events !== "function") {
      network.failEvents(new Error("this backend keeps no events"));
      return;
    }
    network.expectEvents();
    try {
      const reply = await this.backend.events();
      network.loadEvents(reply.events);
    } catch (err) {
      network.failEvents(err);
    }
  }

  fitComposer() {
    // Grow with the text up to about six lines, then scroll inside. Emptied after a send, it
    // is one line again, with no need to measure it.
    this.text.style.height = "auto";
    if (!this.text.value) return;
    this.text.style.height = `${Math.min(this.text.scrollHeight, 160)}px`;
  }

  async submit() {
    const text = this.text.value;
    if (!text.trim()) return;
    this.error.hidden = true;
    const generation = this.generation;
    const room = this.backend.room;
    try {
      const message = await this.backend.send(text);
      if (generation !== this.generation) {
        // Sent in a room left meanwhile: its text is no draft there any more.
        if (room != null && this.drafts.get(room) === text) this.drafts.delete(room);
        return;
      }
      this.text.value = "";
      this.fitComposer();
      this.addMessages([message], true);
    } catch (err) {
      if (generation !== this.generation) return;
      this.error.textContent = err.message;
      this.error.hidden = false;
    }
  }

  /** Read the page before the oldest message shown (one read at a time). */
  loadOlder() {
    if (!this.olderToken) return Promise.resolve();
    if (!this.loadingOlder) {
      this.loadingOlder = this.readOlder().finally(() => { this.loadingOlder = null; });
    }
    return this.loadingOlder;
  }

  async readOlder() {
    const token = this.olderToken;
    const generation = this.generation;
    const page = await this.backend.messages(token, OLDER_PAGE);
    // The window was trimmed, or shows another room, meanwhile: read again.
    if (token !== this.olderToken || generation !== this.generation) return;
    const keepBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this.setOlder(page.older);
    for (const m of page.messages) this.place(m, false);
    this.scroller.scrollTop = this.scroller.scrollHeight - keepBottom;
  }

  /**
   * @param {string | null} token the page token of the messages before those shown
   */
  setOlder(token) {
    this.olderToken = token;
    if (this.older.hidden !== !token) this.older.hidden = !token;
  }

  /**
   * @param {any} event a live event of the backend
   */
  onEvent(event) {
    if (event.type === "message") this.addMessages([event.message], true);
    else if (event.type === "state") this.renderState(event.state);
    else if (event.type === "delivery") this.updateDelivery(event.id, event.delivery);
    else if (event.type === "reconnected") this.loadEvents(); // events missed meanwhile
    else if (event.type === "event") {
      this.eventsToDraw.push(event.event);
      this.panel.request();
    }
  }

  scrollToEnd() {
    const before = this.scroller.scrollTop;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    // The scroll event this causes is ours, to the end: no reason to look for older messages.
    if (this.scroller.scrollTop !== before) this.ownScroll = true;
  }

  /**
   * @param {Message[]} messages
   * @param {boolean} scroll
   */
  addMessages(messages, scroll) {
    // No layout is read here: whether the reader is at the end comes from an
    // IntersectionObserver, and the scroll to the end waits for the next frame.
    const t0 = timing.now();
    for (const m of messages) this.place(m, Boolean(this.olderToken));
    const empty = this.messages.size === 0;
    if (this.empty.hidden !== !empty) this.empty.hidden = !empty;
    if (scroll && (this.atEnd || messages.some((m) => m.mine))) {
      // At the newest messages the page keeps only the last WINDOW of them; what is dropped
      // is read again from the backend if the reader scrolls back.
      if (this.messages.trimOldest(WINDOW)) {
        this.setOlder(tokenOf(/** @type {Message} */ (this.messages.oldest())));
      }
      this.scrollPending = true;
      this.requestFrame();
    }
    timing.measure("draw: add the message to the list (ChatView.addMessages)", t0);
  }

  /**
   * Show one message at its place in display order, or move a shown one's mark forward.
   * @param {Message} m
   * @param {boolean} olderUnloaded
   */
  place(m, olderUnloaded) {
    const known = this.messages.get(m.id);
    if (known) {
      // A copy from a reply or a page may be older than the live delivery events already
      // shown: marks only ever move forward here.
      this.updateDelivery(m.id, laterDelivery(known.message.delivery, m.delivery));
      return;
    }
    this.messages.insert(m, olderUnloaded);
  }

  /**
   * @param {string} id
   * @param {Delivery | null | undefined} delivery
   */
  updateDelivery(id, delivery) {
    const known = this.messages.get(id);
    if (!known) return;
    known.message.delivery = delivery;
    this.deliveriesToDraw.add(id);
    this.slow.request();
  }

  /**
   * Show the backend's state of the room at the next frame (the newest one, if several come
   * before it).
   * @param {any} state the backend's state of the room
   */
  renderState(state) {
    this.stateToDraw = state;
    // A change of the member list (a link up or down, a round-trip time) or of the server
    // link is drawn at the next frame; the rest (the outbox count, which moves with every
    // message sent) can wait for the panel's lane.
    if (state.server && Array.isArray(state.peers) && !this.changesAtOnce(state)) {
      this.panel.request();
    } else {
      this.requestFrame();
    }
  }

  /**
   * Whether `state` changes what is drawn at the next frame: the member list or the server
   * link (lost, back).
   * @param {any} state the backend's state of the room, with its server and peers
   */
  changesAtOnce(state) {
    return membersKey(state) !== this.drawn.members || linkKey(state.server) !== this.drawn.link;
  }

  /**
   * Draw a state: the member list, the banner and the network view, each only if what it
   * shows changed.
   * @param {any} state the backend's state of the room
   */
  drawState(state) {
    if (!state.server) return; // an agent in no room: nothing to show
    if (this.startedAt && state.started_at && state.started_at !== this.startedAt) {
      this.network.restarted();
      this.loadEvents();
    }
    this.startedAt = state.started_at;
    const network = JSON.stringify(state);
    if (network !== this.drawn.network) {
      this.drawn.network = network;
      this.network.renderState(state);
    }
    const title = this.titleOf(state);
    if (this.roomTitle && this.roomTitle.textContent !== title) this.roomTitle.textContent = title;
    if (this.whoami && this.whoami.textContent !== state.user) this.whoami.textContent = state.user;
    const server = state.server;
    const banner = JSON.stringify([server.connected, server.state, server.outbox]);
    this.drawn.link = linkKey(server);
    if (banner !== this.drawn.banner) {
      this.drawn.banner = banner;
      drawBanner(this.banner, server);
    }
    const members = membersKey(state);
    if (members !== this.drawn.members) {
      this.drawn.members = members;
      drawMembers(this.members, state);
    }
  }
}
