// @ts-check
// One message of the chat's list (ui.js, ChatView, places them; message-window.js keeps
// them in order): its node, its delivery mark, and the path it travelled, opened under it.
// User text only ever goes through textContent.

import { clock } from "./network.js";
import { setTime } from "./timestamps.js";
import { el } from "./dom.js";

/** @typedef {import("./message-window.js").Message} Message */
/** @typedef {{peers_reached: number, peers_total: number, server: boolean}} Delivery */

// Made once: toLocaleTimeString() builds a formatter on every call, a fair part of drawing a
// message.
const TIME_OF_DAY = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const DAY_AND_TIME = new Intl.DateTimeFormat([], { dateStyle: "short", timeStyle: "short" });

/**
 * @param {Date} d
 */
function formatTime(d) {
  const now = new Date();
  const sameDay = d.getDate() === now.getDate() && d.getMonth() === now.getMonth()
    && d.getFullYear() === now.getFullYear();
  return sameDay ? TIME_OF_DAY.format(d) : DAY_AND_TIME.format(d);
}

/**
 * The further along of two delivery marks of one message (both only ever move forward).
 * @param {Delivery | null | undefined} shown
 * @param {Delivery | null | undefined} other
 */
export function laterDelivery(shown, other) {
  if (!shown || !other) return shown || other;
  return {
    peers_reached: Math.max(shown.peers_reached, other.peers_reached),
    peers_total: Math.max(shown.peers_total, other.peers_total),
    server: shown.server || other.server,
  };
}

/**
 * The node of one message in the list: its author, time, path button, delivery mark, text.
 * @param {Message} m
 */
export function renderMessage(m) {
  const li = el("li", { className: "message" + (m.mine ? " mine" : "") });
  li.dataset.id = m.id;
  const head = el("div", { className: "message-head" });
  head.append(el("span", { className: "author" }, m.author));
  const time = /** @type {HTMLTimeElement} */ (el("time"));
  setTime(time, m.ts, formatTime);
  head.append(time);
  head.append(el("button", { type: "button", className: "path-toggle", "aria-expanded": "false",
    title: "How this message travelled" }, "path"));
  head.append(el("span", { className: "delivery" }));
  li.append(head, el("p", { className: "text" }, m.text));
  fillDelivery(li, m.delivery);
  return li;
}

/**
 * Write a message's delivery mark into its node.
 * @param {Element} li
 * @param {Delivery | null | undefined} delivery
 */
export function fillDelivery(li, delivery) {
  const mark = /** @type {HTMLElement} */ (li.querySelector(".delivery"));
  if (!delivery) { mark.textContent = ""; return; }
  const peers = delivery.peers_total > 0
    ? `${delivery.peers_reached}/${delivery.peers_total} peers` : "no peers online";
  mark.textContent = `${peers} · ${delivery.server ? "server ✓" : "server pending"}`;
  mark.dataset.server = delivery.server ? "yes" : "no";
  mark.dataset.allPeers = delivery.peers_reached >= delivery.peers_total ? "yes" : "no";
  mark.title = delivery.server ? "stored in the server's log" : "waiting to reach the server";
}

/**
 * Open (fetching it afresh) or close the path of a message under it.
 * @param {HTMLElement} li
 * @param {{path?: (id: string) => Promise<any>}} backend the view's backend
 */
export async function togglePath(li, backend) {
  const button = /** @type {Element} */ (li.querySelector("button.path-toggle"));
  const shown = li.querySelector(".path");
  if (shown) {
    shown.remove();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const box = el("div", { className: "path" });
  const status = el("p", { className: "path-status" }, "Loading the path…");
  box.append(status);
  li.append(box);
  button.setAttribute("aria-expanded", "true");
  let reply;
  try {
    if (typeof backend.path !== "function") throw new Error("this backend keeps no paths");
    reply = await backend.path(String(li.dataset.id));
  } catch (err) {
    status.textContent = `Could not load the path: ${err.message}`;
    status.dataset.error = "yes";
    return;
  }
  if (!box.isConnected) return; // closed while loading
  const steps = Array.isArray(reply.steps) ? reply.steps : [];
  const list = el("ol", { className: "path-steps" });
  const first = steps.length ? steps[0].at : 0;
  for (const step of steps) {
    const item = el("li");
    item.dataset.what = String(step.what);
    const time = /** @type {HTMLTimeElement} */ (el("time"));
    setTime(time, step.at, clock);
    const after = step.at - first;
    const delta = el("span", { className: "path-delta" },
      after > 0 ? `+${after < 1000 ? `${after} ms` : `${(after / 1000).toFixed(1)} s`}` : "");
    const when = el("span", { className: "path-when" });
    when.append(time, delta);
    const body = el("span", { className: "path-body" });
    body.append(el("span", { className: "path-what" }, String(step.what).replace("_", " ")),
      el("span", { className: "path-text" }, String(step.text || step.what)));
    item.append(when, body);
    list.append(item);
  }
  status.textContent = steps.length ? "How this message travelled:" : "No steps recorded.";
  box.append(list);
}
