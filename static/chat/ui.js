// The chat UI, shared by the agent's page and (later) the browser peer. It talks to a
// "backend" object: { state(), messages(before), send(text), subscribe(onEvent) }.
// User text only ever goes through textContent.

const LINK_LABELS = {
  connected: "direct P2P",
  connecting: "connecting",
  failed: "reconnecting",
  closed: "offline",
  offline: "offline",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
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

function orderKey(m) {
  return [m.lamport, m.device, m.seq];
}

function compare(a, b) {
  const ka = orderKey(a);
  const kb = orderKey(b);
  for (let i = 0; i < 3; i++) {
    if (ka[i] < kb[i]) return -1;
    if (ka[i] > kb[i]) return 1;
  }
  return 0;
}

export class ChatView {
  constructor(doc, backend) {
    this.backend = backend;
    this.list = doc.getElementById("messages");
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
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
    });
    this.older.addEventListener("click", () => this.loadOlder());
    this.backend.subscribe((event) => this.onEvent(event));
    this.renderState(await this.backend.state());
    const page = await this.backend.messages(null);
    this.addMessages(page.messages, true);
    this.setOlder(page.older);
  }

  async submit() {
    const text = this.text.value;
    if (!text.trim()) return;
    this.error.hidden = true;
    try {
      const message = await this.backend.send(text);
      this.text.value = "";
      this.addMessages([message], true);
    } catch (err) {
      this.error.textContent = err.message;
      this.error.hidden = false;
    }
  }

  async loadOlder() {
    if (!this.olderToken) return;
    const keepBottom = this.list.scrollHeight - this.list.scrollTop;
    const page = await this.backend.messages(this.olderToken);
    this.addMessages(page.messages, false);
    this.setOlder(page.older);
    this.list.scrollTop = this.list.scrollHeight - keepBottom;
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

  addMessages(messages, scroll) {
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    for (const m of messages) {
      const known = this.messages.get(m.id);
      if (known) { this.updateDelivery(m.id, m.delivery); continue; }
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
    if (scroll && (nearBottom || messages.some((m) => m.mine))) {
      this.list.scrollTop = this.list.scrollHeight;
    }
  }

  renderMessage(m) {
    const li = el("li", "message" + (m.mine ? " mine" : ""));
    li.dataset.id = m.id;
    const head = el("div", "message-head");
    head.append(el("span", "author", m.author));
    const time = el("time", "", formatTime(m.ts));
    time.dateTime = new Date(m.ts).toISOString();
    head.append(time);
    head.append(el("span", "delivery"));
    li.append(head, el("p", "text", m.text));
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
    this.roomTitle.textContent = "#" + state.room;
    this.whoami.textContent = state.user;
    const server = state.server;
    if (server.connected) {
      this.banner.hidden = true;
      this.banner.textContent = "";
    } else {
      const n = server.outbox;
      this.banner.textContent = `The server is unreachable. Chat continues peer to peer; ` +
        `${n} message${n === 1 ? "" : "s"} waiting to reach the server.`;
      this.banner.hidden = false;
    }
    this.banner.dataset.outbox = String(server.outbox);
    this.members.replaceChildren();
    const me = el("li", "member self");
    me.append(el("span", "member-name", `${state.user} (you)`),
              el("span", "link-state", "this device"));
    this.members.append(me);
    for (const p of state.peers) {
      const li = el("li", "member");
      li.dataset.device = p.device;
      li.dataset.state = p.state;
      li.append(el("span", "member-name", p.user));
      const label = LINK_LABELS[p.state] || p.state;
      const rtt = p.state === "connected" && p.rtt_ms != null ? ` · ${p.rtt_ms.toFixed(1)} ms` : "";
      li.append(el("span", "link-state " + p.state, label + rtt));
      this.members.append(li);
    }
  }
}
