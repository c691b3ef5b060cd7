// The browser peer's page (/rooms/<room>): the shared chat UI over a BrowserPeer.

import { BrowserPeer } from "./browser-peer.js";
import { ChatView } from "./ui.js";

const root = document.getElementById("chat");
const room = root.dataset.room;
const user = root.dataset.user;
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

function fatal(message) {
  const notice = document.createElement("p");
  notice.className = "banner fatal";
  notice.setAttribute("role", "alert");
  notice.textContent = message;
  root.replaceChildren(notice);
  root.dataset.ready = "error";
}

async function run() {
  const peer = new BrowserPeer({ room, csrfToken });
  await peer.start();
  const view = new ChatView(document, peer, root);
  await view.start();
  root.dataset.ready = "yes";
  root.dataset.device = peer.key.device;
}

// One tab per user and room is this device's peer: two would share the device key and
// hand out the same message numbers. A second tab says so instead of joining.
if (!globalThis.isSecureContext || !navigator.locks) {
  fatal("This page needs a secure connection (HTTPS, or http://127.0.0.1 on this machine) "
    + "to keep your device key.");
} else {
  navigator.locks.request(`gibberish:${user}:${room}`, { ifAvailable: true }, async (lock) => {
    if (!lock) {
      fatal(`#${room} is already open in another tab of this browser. Use that tab, or close `
        + "it and reload this one.");
      return;
    }
    try {
      await run();
    } catch (err) {
      fatal(`Could not join #${room}: ${err.message}`);
      return;
    }
    // Hold the lock for as long as the page lives.
    await new Promise(() => {});
  });
}
