// The browser peer's page (/rooms/<room>): the shared chat UI over a BrowserPeer.

import { BrowserPeer } from "./browser-peer.js";
import { ChatView } from "./ui.js";

const root = document.getElementById("chat");
const room = root.dataset.room;
const user = root.dataset.user;
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
// How long a page waits for the device's lock (see below) before it says another tab has it.
const LOCK_WAIT_MS = 3000;

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
function markOnce(name) {
  if (marked.has(name)) return;
  marked.add(name);
  performance.mark(name);
}

async function run() {
  const peer = new BrowserPeer({ room, csrfToken });
  peer.subscribe((event) => {
    if (event.type !== "state") return;
    if (event.state.server.connected) markOnce("gibberish:joined");
    if (event.state.peers.some((p) => p.state === "connected")) markOnce("gibberish:channel-open");
  });
  await peer.start();
  const view = new ChatView(document, peer, root);
  await view.start();
  // After the view's own listener, so the message is in the list when the mark is made.
  peer.subscribe((event) => {
    if (event.type === "message" && !event.message.mine) markOnce("gibberish:first-peer-message");
  });
  markOnce("gibberish:ready");
  root.dataset.ready = "yes";
  root.dataset.device = peer.key.device;
}

// One tab per user is this device's peer, whatever its room: two tabs share the device key,
// so two would hand out the same message numbers in one room, and in two rooms would each make
// their own connection for the one device, to an agent that keeps one connection per device
// (for every room the two share). A second tab says so instead of joining; switching rooms
// inside one page is for a later release.
if (!globalThis.isSecureContext || !navigator.locks) {
  fatal("This page needs a secure connection (HTTPS, or http://127.0.0.1 on this machine) "
    + "to keep your device key.");
} else {
  // Going from one room's page to another in the same tab, the page left may still hold the
  // lock for a moment: wait a little for it before saying another tab has it.
  navigator.locks.request(`gibberish:${user}`, { signal: AbortSignal.timeout(LOCK_WAIT_MS) },
    async () => {
      try {
        await run();
      } catch (err) {
        fatal(`Could not join #${room}: ${err.message}`);
        return;
      }
      // Hold the lock for as long as the page lives.
      await new Promise(() => {});
    }).catch((err) => {
    if (err.name === "TimeoutError" || err.name === "AbortError") {
      fatal("Gibberish is already open in another tab of this browser (one tab per device). "
        + "Use that tab, or close it and reload this one.");
    } else {
      fatal(`Could not join #${room}: ${err.message}`);
    }
  });
}
