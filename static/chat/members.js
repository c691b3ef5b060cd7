// @ts-check
// The member list and the server banner, drawn from the backend's state of the room (ui.js,
// ChatView, decides when: each is redrawn only when what it shows changed).
// User text only ever goes through textContent.

import { el } from "./dom.js";

/**
 * What the member list shows of a state: it is redrawn only when this changes.
 * @param {any} state
 */
export function membersKey(state) {
  return JSON.stringify([state.user, state.peers.map((/** @type {any} */ p) => [p.device, p.user, p.state,
    p.path ? p.path.kind : null, p.ice_restarts || 0,
    p.rtt_ms == null ? null : Number(p.rtt_ms).toFixed(1)])]);
}

/** @type {Record<string, string>} */
const LINK_LABELS = {
  connected: "direct P2P",
  connecting: "connecting",
  disconnected: "interrupted",
  failed: "reconnecting",
  closed: "offline",
  offline: "offline",
};

/**
 * Show in the banner whether the server is reached, and how many messages wait for it.
 * @param {HTMLElement} banner
 * @param {any} server the state's server part
 */
export function drawBanner(banner, server) {
  banner.dataset.outbox = String(server.outbox);
  if (server.connected) {
    banner.hidden = true;
    banner.textContent = "";
    banner.dataset.state = "connected";
  } else if (server.state === "connecting") {
    banner.textContent = "Connecting to the server…";
    banner.dataset.state = "connecting";
    banner.hidden = false;
  } else {
    const n = server.outbox;
    banner.textContent = "The server is unreachable. Chat continues peer to peer; "
      + `${n} message${n === 1 ? "" : "s"} waiting to reach the server.`;
    banner.dataset.state = "down";
    banner.hidden = false;
  }
}

/**
 * Draw the member list afresh: this device, then each peer with the state of its link.
 * @param {HTMLElement} list
 * @param {any} state
 */
export function drawMembers(list, state) {
  list.replaceChildren();
  const me = el("li", { className: "member self" });
  me.append(el("span", { className: "member-name" }, `${state.user} (you)`),
            el("span", { className: "link-state" }, "this device"));
  list.append(me);
  for (const p of state.peers) {
    const li = el("li", { className: "member" });
    li.dataset.device = p.device;
    li.dataset.state = p.state;
    li.dataset.path = p.state === "connected" && p.path ? p.path.kind : "none";
    if (p.ice_restarts) li.dataset.iceRestarts = String(p.ice_restarts);
    li.append(el("span", { className: "member-name" }, p.user));
    const relayed = p.state === "connected" && p.path && p.path.kind === "relay";
    const label = relayed ? "P2P via TURN relay" : LINK_LABELS[p.state] || p.state;
    const rtt = p.state === "connected" && p.rtt_ms != null ? ` · ${p.rtt_ms.toFixed(1)} ms` : "";
    li.append(el("span", { className: "link-state " + p.state }, label + rtt));
    list.append(li);
  }
}
