// The chat UI, shared by the agent's page (static/chat.html) and the browser peer
// (templates/room.html). It builds its own markup inside a root element, so both pages show
// the same thing, and talks to a "backend":
//   { state(), messages(before), send(text), subscribe(onEvent) }
// served by the agent's JSON API (agent-backend.js) or by the browser peer (browser-peer.js).
// User text only ever goes through textContent.

const LINK_LABELS = {
  connected: "direct P2P",
  connecting: "connecting",
  failed: "reconnecting",
  closed: "offline",
  offline: "offline",
};

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "className") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function compare(a, b) {
  if (a.lamport !== b.lamport) return a.lamport < b.lamport ? -1 : 1;
  if (a.device !== b.device) return a.device < b.device ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/** The further along of two delivery marks of one message (both only ever move forward). */
function laterDelivery(shown, other) {
  if (!shown || !other) return shown || other;
  return {
    peers_reached: Math.max(shown.peers_reached, other.peers_reached),
    peers_total: Math.max(shown.peers_total, other.peers_total),
    server: shown.server || other.server,
  };
}

/**
 * Build the chat's markup inside `root`: the server banner, the message list with its
 * "load older" button, the composer and the member list. The element ids are what pages,
 * tests and ChatView rely on.
 */
export function buildChatLayout(root) {
  const banner = el("div", { className: "banner", id: "server-banner", role: "status", hidden: true });
  const older = el("button", { type: "button", className: "older", id: "load-older", hidden: true },
    "Load older messages");
  const empty = el("p", { className: "empty-chat", id: "empty-chat", hidden: true },
    "No messages yet. Say hello!");
  const list = el("ol", { className: "messages chat-messages", id: "messages", "aria-live": "polite" });
  const label = el("label", { for: "composer-text", className: "visually-hidden" }, "Message");
  const text = el("textarea", { id: "composer-text", name: "text", rows: "1", maxlength: "4000",
    placeholder: "Write a message", required: true, autocomplete: "off" });
  const send = el("button", { type: "submit" }, "Send");
  const form = el("form", { className: "composer", id: "composer" });
  form.append(label, text, send);
  const error = el("p", { className: "composer-error", id: "composer-error", role: "alert", hidden: true });
  const main = el("section", { className: "chat-main", "aria-label": "Messages" });
  const scroller = el("div", { className: "chat-scroll", id: "chat-scroll" });
  scroller.append(older, empty, list);
  main.append(scroller, error, form);
  const members = el("aside", { className: "members", "aria-label": "Members" });
  members.append(el("h2", {}, "In this room"), el("ul", { id: "members" }));
  const layout = el("div", { className: "chat-layout" });
  layout.append(main, members);
  root.replaceChildren(banner, layout);
}

export class ChatView {
  constructor(doc, backend, root = doc.getElementById("chat")) {
    buildChatLayout(root);
    this.backend = backend;
    this.list = doc.getElementById("messages");
    this.scroller = doc.getElementById("chat-scroll");
    this.empty = doc.getElementById("empty-chat");
    this.members = doc.getElementById("members");
    this.banner = doc.getElementById("server-banner");
    this.older = doc.getElementById("load-older");
    this.form = doc.getElementById("composer");
    this.text = doc.getElementById("composer-text");
    this.error = doc.getElementById("composer-error");
    this.roomTitle = doc.getElementById("room-title");
    this.whoami = doc.getElementById("whoami");
    this.messages = new Map(); // id -> {message, node}
    this.olderToken = null;
  }

  async start() {
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.submit(); }
    });
    this.text.addEventListener("input", () => this.fitComposer());
    this.older.addEventListener("click", () => this.loadOlder());
    this.backend.subscribe((event) => this.onEvent(event));
    this.renderState(await this.backend.state());
    const page = await this.backend.messages(null);
    this.addMessages(page.messages, true);
    this.setOlder(page.older);
    this.scrollToEnd();
  }

  fitComposer() {
    // Grow with the text up to about six lines, then scroll inside.
    this.text.style.height = "auto";
    this.text.style.height = `${Math.min(this.text.scrollHeight, 160)}px`;
  }

  async submit() {
    const text = this.text.value;
    if (!text.trim()) return;
    this.error.hidden = true;
    try {
      const message = await this.backend.send(text);
      this.text.value = "";
      this.fitComposer();
      this.addMessages([message], true);
    } catch (err) {
      this.error.textContent = err.message;
      this.error.hidden = false;
    }
  }

  async loadOlder() {
    if (!this.olderToken) return;
    const keepBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    const page = await this.backend.messages(this.olderToken);
    this.addMessages(page.messages, false);
    this.setOlder(page.older);
    this.scroller.scrollTop = this.scroller.scrollHeight - keepBottom;
  }

  setOlder(token) {
    this.olderToken = token;
    this.older.hidden = !token;
  }

  onEvent(event) {
    if (event.type === "message") this.addMessages([event.message], true);
    else if (event.type === "state") this.renderState(event.state);
    else if (event.type === "delivery") this.updateDelivery(event.id, event.delivery);
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  addMessages(messages, scroll) {
    const s = this.scroller;
    const nearBottom = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    for (const m of messages) {
      const known = this.messages.get(m.id);
      if (known) {
        // A copy from a reply or a page may be older than the live delivery events already
        // shown: marks only ever move forward here.
        this.updateDelivery(m.id, laterDelivery(known.message.delivery, m.delivery));
        continue;
      }
      const node = this.renderMessage(m);
      this.messages.set(m.id, { message: m, node });
      // Insert in display order (lamport, device, seq), scanning from the end: new
      // messages almost always belong last.
      let after = this.list.lastElementChild;
      while (after && compare(this.messages.get(after.dataset.id).message, m) > 0) {
        after = after.previousElementSibling;
      }
      this.list.insertBefore(node, after ? after.nextSibling : this.list.firstChild);
    }
    this.empty.hidden = this.messages.size > 0;
    if (scroll && (nearBottom || messages.some((m) => m.mine))) this.scrollToEnd();
  }

  renderMessage(m) {
    const li = el("li", { className: "message" + (m.mine ? " mine" : "") });
    li.dataset.id = m.id;
    const head = el("div", { className: "message-head" });
    head.append(el("span", { className: "author" }, m.author));
    const time = el("time", {}, formatTime(m.ts));
    time.dateTime = new Date(m.ts).toISOString();
    head.append(time);
    head.append(el("span", { className: "delivery" }));
    li.append(head, el("p", { className: "text" }, m.text));
    this.fillDelivery(li, m.delivery);
    return li;
  }

  fillDelivery(li, delivery) {
    const mark = li.querySelector(".delivery");
    if (!delivery) { mark.textContent = ""; return; }
    const peers = delivery.peers_total > 0
      ? `${delivery.peers_reached}/${delivery.peers_total} peers` : "no peers online";
    mark.textContent = `${peers} · ${delivery.server ? "server ✓" : "server pending"}`;
    mark.dataset.server = delivery.server ? "yes" : "no";
    mark.dataset.allPeers = delivery.peers_reached >= delivery.peers_total ? "yes" : "no";
    mark.title = delivery.server ? "stored in the server's log" : "waiting to reach the server";
  }

  updateDelivery(id, delivery) {
    const known = this.messages.get(id);
    if (!known) return;
    known.message.delivery = delivery;
    this.fillDelivery(known.node, delivery);
  }

  renderState(state) {
    if (this.roomTitle) this.roomTitle.textContent = "#" + state.room;
    if (this.whoami) this.whoami.textContent = state.user;
    const server = state.server;
    this.banner.dataset.outbox = String(server.outbox);
    if (server.connected) {
      this.banner.hidden = true;
      this.banner.textContent = "";
      this.banner.dataset.state = "connected";
    } else if (server.state === "connecting") {
      this.banner.textContent = "Connecting to the server…";
      this.banner.dataset.state = "connecting";
      this.banner.hidden = false;
    } else {
      const n = server.outbox;
      this.banner.textContent = "The server is unreachable. Chat continues peer to peer; "
        + `${n} message${n === 1 ? "" : "s"} waiting to reach the server.`;
      this.banner.dataset.state = "down";
      this.banner.hidden = false;
    }
    this.members.replaceChildren();
    const me = el("li", { className: "member self" });
    me.append(el("span", { className: "member-name" }, `${state.user} (you)`),
              el("span", { className: "link-state" }, "this device"));
    this.members.append(me);
    for (const p of state.peers) {
      const li = el("li", { className: "member" });
      li.dataset.device = p.device;
      li.dataset.state = p.state;
      li.append(el("span", { className: "member-name" }, p.user));
      const label = LINK_LABELS[p.state] || p.state;
      const rtt = p.state === "connected" && p.rtt_ms != null ? ` · ${p.rtt_ms.toFixed(1)} ms` : "";
      li.append(el("span", { className: "link-state " + p.state }, label + rtt));
      this.members.append(li);
    }
  }
}
