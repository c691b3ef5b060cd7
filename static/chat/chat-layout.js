// @ts-check
// The chat's markup, built inside a root element so that the agent's page and the browser
// peer's show the same thing (ui.js, ChatView, fills it and wires it).

import { buildNetworkPanel } from "./network.js";
import { el } from "./dom.js";

/**
 * Build the chat's markup inside `root`: the server banner, the tabs (narrow screens only),
 * the message list with its "load older" button, the composer, and the side column with the
 * member list and the Network panel. The element ids are what pages, tests and ChatView
 * rely on.
 * @param {HTMLElement} root
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
  // Watched to know whether the reader is at the newest messages, without reading layout.
  const end = el("div", { className: "chat-end", id: "chat-end", "aria-hidden": "true" });
  scroller.append(older, empty, list, end);
  main.append(scroller, error, form);
  main.id = "chat-main";
  const members = el("aside", { className: "members", "aria-label": "Members" });
  members.append(el("h2", {}, "In this room"), el("ul", { id: "members" }));
  const side = el("div", { className: "side-column", id: "side-column" });
  side.append(members, buildNetworkPanel(document));
  const tabs = el("div", { className: "view-tabs", role: "tablist", "aria-label": "View" });
  tabs.append(
    el("button", { type: "button", id: "tab-chat", role: "tab", "aria-selected": "true",
      "aria-controls": "chat-main" }, "Chat"),
    el("button", { type: "button", id: "tab-network", role: "tab", "aria-selected": "false",
      "aria-controls": "network" }, "Network"));
  const layout = el("div", { className: "chat-layout", id: "chat-layout" });
  layout.dataset.tab = "chat";
  layout.append(main, side);
  root.replaceChildren(banner, tabs, layout);
}
