// @ts-check
// The browser peer's page (/rooms/<room>): the room list and the shared chat UI over the
// page's device (browser-device.js), which is in every room the user keeps in this browser,
// over one Socket.IO connection and one RTCPeerConnection per other device. The room in the
// address is shown first (joined if new); choosing another switches without a reload, and
// the address follows.

import { BrowserDevice } from "./browser-device.js";
import { RoomList } from "./rooms.js";
import { ChatView } from "./ui.js";

const root = /** @type {HTMLElement} */ (document.getElementById("chat"));
const room = root.dataset.room || null;
const user = root.dataset.user || "";
const csrfToken = /** @type {HTMLMetaElement} */ (
  document.querySelector('meta[name="csrf-token"]')).content;
const historyLink = /** @type {HTMLAnchorElement | null} */ (document.getElementById("history-link"));
// How long a page waits for the device's lock (see below) before it says another tab has it.
const LOCK_WAIT_MS = 3000;

/**
 * Say why the page cannot chat, in place of the chat.
 * @param {string} message
 */
function fatal(message) {
  const notice = document.createElement("p");
  notice.className = "banner fatal";
  notice.setAttribute("role", "alert");
  notice.textContent = message;
  root.replaceChildren(notice);
  root.dataset.ready = "error";
}

/**
 * Performance marks of the page's opening, each made once, timed from its navigation
 * (bench/browser.py reads them): the socket joined the room, the first data channel opened,
 * the page was ready, the first message from another device was shown.
 */
const marked = new Set();
/** @param {string} name */
function markOnce(name) {
  if (marked.has(name)) return;
  marked.add(name);
  performance.mark(name);
}

/** The room shown lives in the address's path: /rooms/<room>. @type {import("./rooms.js").RoomAddress} */
const PATH_ADDRESS = {
  read: () => room,
  write(shown) {
    if (shown === null) return;
    const path = `/rooms/${encodeURIComponent(shown)}`;
    if (location.pathname !== path) history.replaceState(null, "", path);
    if (historyLink) historyLink.href = `/rooms/${encodeURIComponent(shown)}/history`;
  },
};

/**
 * @param {BrowserDevice} device
 * @param {Promise<void>} prepared its `prepare()`, started while the page waited for its lock
 */
async function run(device, prepared) {
  device.subscribe((event) => {
    if (event.type !== "state") return;
    if (event.state.server.connected) markOnce("gibberish:joined");
    if (event.state.peers.some((/** @type {any} */ p) => p.state === "connected")) {
      markOnce("gibberish:channel-open");
    }
  });
  await device.start(room, prepared);
  const view = new ChatView(document, device, root);
  const rooms = new RoomList(document, device, view, PATH_ADDRESS);
  await rooms.start();
  // After the view's own listener, so the message is in the list when the mark is made.
  device.subscribe((event) => {
    if (event.type === "message" && !event.message.mine) markOnce("gibberish:first-peer-message");
  });
  markOnce("gibberish:ready");
  root.dataset.ready = "yes";
  root.dataset.device = device.key.device;
}

// One tab per user is this device's peer: two tabs share the device key, so two would hand
// out the same message numbers in a room, and each would make its own connection for the one
// device, to an agent that keeps one connection per device. Every room is in the one tab
// (its room list); a second tab says so instead of joining.
if (!globalThis.isSecureContext || !navigator.locks) {
  fatal("This page needs a secure connection (HTTPS, or http://127.0.0.1 on this machine) "
    + "to keep your device key.");
} else {
  const device = new BrowserDevice({ csrfToken });
  // Signing in, the key and the socket need no lock: begun at once, they are often done by
  // the time the lock is granted. A page that never gets it closes its socket.
  const prepared = device.prepare(room);
  prepared.catch(() => {}); // awaited in run()
  // Going from one room's page to another in the same tab, the page left may still hold the
  // lock for a moment: wait a little for it before saying another tab has it.
  navigator.locks.request(`gibberish:${user}`, { signal: AbortSignal.timeout(LOCK_WAIT_MS) },
    async () => {
      try {
        await run(device, prepared);
      } catch (err) {
        fatal(`Could not join #${room}: ${err.message}`);
        return;
      }
      // Hold the lock for as long as the page lives.
      await new Promise(() => {});
    }).catch((err) => {
    device.server.close();
    if (err.name === "TimeoutError" || err.name === "AbortError") {
      fatal("Gibberish is already open in another tab of this browser (one tab per device). "
        + "Use that tab, or close it and reload this one.");
    } else {
      fatal(`Could not join #${room}: ${err.message}`);
    }
  });
}
