// @ts-check
// The Network panel of the chat UI (docs/network-view.md): a graph of this device, its peers
// and the server, drawn from the backend's `state`, and a timeline of the backend's events.
// The graph's layout and drawing are network-graph.js's; here are the panel's markup
// (buildNetworkPanel), NetworkView, which keeps the graph's last drawing and runs the
// timeline, and clock. User text only ever goes through textContent.

import { setTime } from "./timestamps.js";
import { CY, LINK_STATES, RY, renderState, svg, W } from "./network-graph.js";

export { LINK_STATES };

const TIMELINE_MAX = 200;

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function html(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {number} n
 * @param {number} [width]
 */
function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/**
 * HH:MM:SS in local time, of a Date or of milliseconds since the epoch.
 * @param {Date | number} ms
 */
export function clock(ms) {
  const d = ms instanceof Date ? ms : new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export class NetworkView {
  /**
   * `panel` is the element built by buildNetworkPanel (it holds the graph, the legend, the
   * summary and the timeline).
   * @param {HTMLElement} panel
   */
  constructor(panel) {
    this.panel = panel;
    this.graph = /** @type {SVGSVGElement} */ (panel.querySelector("#network-graph"));
    this.summary = /** @type {HTMLElement} */ (panel.querySelector("#network-summary"));
    this.timeline = /** @type {HTMLOListElement} */ (panel.querySelector("#timeline"));
    this.timelineEmpty = /** @type {HTMLElement} */ (panel.querySelector("#timeline-empty"));
    /** @type {any[]} live events that arrived while events() was being answered */
    this.pending = [];
    this.loaded = false;
    this.lastSeq = -1;
    /** @type {string | null} the last state drawn, its outbox count left out */
    this.shape = null;
    /** @type {Element | null} the server link's drawing */
    this.serverEdge = null;
    /** @type {any[] | null} the devices last drawn */
    this.devices = null;
  }

  // -- the graph -----------------------------------------------------------------------------

  /**
   * Draw the graph of a state (network-graph.js's renderState).
   * @param {any} state the backend's state()
   */
  renderState(state) {
    renderState(this, state);
  }

  // -- the timeline --------------------------------------------------------------------------

  /** Hold live events until the answer to an events() call now under way is in. */
  expectEvents() {
    this.loaded = false;
  }

  /** The events the backend had (oldest first) that are not shown yet, then the ones that
   * came live while they were being fetched.
   * @param {any[] | null | undefined} events
   */
  loadEvents(events) {
    for (const event of [...(events || []), ...this.pending]) {
      if (!(Number.isFinite(event.seq) && event.seq <= this.lastSeq)) this.renderEvent(event);
    }
    this.pending = [];
    this.loaded = true;
  }

  /** The backend behind the page is a new process (the agent restarted): its events number
   * from 1 again. What the old one said stays, below a divider. */
  restarted() {
    this.renderEvent({ at: Date.now(), kind: "restart",
      text: "the agent restarted: what follows is from the new process" });
    this.lastSeq = -1;
  }

  /** @param {any} event untrusted: as the backend sent it */
  addEvent(event) {
    if (!event || typeof event !== "object") return;
    if (!this.loaded) this.pending.push(event);
    // A live event held for the next drawing may have come with loadEvents meanwhile.
    else if (!(Number.isFinite(event.seq) && event.seq <= this.lastSeq)) this.renderEvent(event);
  }

  /** @param {any} event */
  renderEvent(event) {
    if (Number.isFinite(event.seq)) this.lastSeq = Math.max(this.lastSeq, event.seq);
    const kind = String(event.kind || "event");
    const li = html("li", `event ${kind}`);
    li.dataset.kind = kind;
    if (Number.isFinite(event.seq)) li.dataset.seq = String(event.seq);
    if (event.state) li.dataset.state = String(event.state);
    const time = html("time", "");
    setTime(time, event.at, clock);
    li.append(time, html("span", "event-kind", kind), html("span", "event-text", String(event.text ?? "")));
    this.timeline.prepend(li);
    while (this.timeline.childElementCount > TIMELINE_MAX) {
      /** @type {Element} */ (this.timeline.lastElementChild).remove();
    }
    this.timelineEmpty.hidden = true;
  }

  /** @param {Error} err */
  failEvents(err) {
    this.timelineEmpty.textContent = `Could not load the events: ${err.message}`;
    this.timelineEmpty.hidden = false;
    this.loadEvents([]);
  }
}

/**
 * @param {string} className
 * @param {string} [kind]
 */
function legendSample(className, kind = "line") {
  const sample = svg("svg", { class: `legend-sample ${className}`, viewBox: "0 0 36 12",
    width: 36, height: 12, "aria-hidden": "true" });
  if (kind === "line") sample.append(svg("line", { x1: 1, y1: 6, x2: 35, y2: 6 }));
  else sample.append(svg("circle", { cx: 18, cy: 6, r: 5 }));
  return sample;
}

/**
 * The Network panel's markup: heading, graph, summary, legend, timeline.
 * @param {Document} doc
 */
export function buildNetworkPanel(doc) {
  const panel = doc.createElement("section");
  panel.className = "network-panel";
  panel.id = "network";
  panel.setAttribute("aria-label", "Network");

  const heading = html("h2", "", "Network");
  const graph = svg("svg", { id: "network-graph", viewBox: `0 0 ${W} ${CY + RY + 40}`, role: "img",
    preserveAspectRatio: "xMidYMid meet", "aria-label": "The room's network" });
  const summary = html("p", "network-summary", "");
  summary.id = "network-summary";

  const legend = html("ul", "network-legend");
  legend.id = "network-legend";
  legend.setAttribute("aria-label", "Legend");
  const entries = [
    ["edge peer-link connected", "line", "connected", "a direct data channel is open"],
    ["edge peer-link connecting", "line", "connecting", "the data channel is being set up"],
    ["edge peer-link disconnected", "line", "interrupted", "no answer for a few seconds: kept, "
      + "in case it recovers"],
    ["edge peer-link connected path-relay", "line", "TURN relay", "an open channel relayed by "
      + "the TURN server"],
    ["edge peer-link failed", "line", "failed / down", "no answer: retrying"],
    ["edge peer-link closed", "line", "closed", "the data channel was closed"],
    ["edge presence", "line", "in the room (server)", "the server lists this device in the room"],
    ["edge reported connected", "line", "between peers", "a data channel between two other "
      + "devices, as they report it (its colour and dashes follow the same states)"],
    ["node offline", "dot", "offline", "seen before, not in the room now"],
  ];
  for (const [cls, kind, name, help] of entries) {
    const li = html("li");
    li.dataset.legend = name;
    li.title = help;
    li.append(legendSample(cls, kind), html("span", "", name));
    legend.append(li);
  }

  const timelineHead = html("h2", "", "What happened");
  timelineHead.id = "timeline-heading";
  const empty = html("p", "timeline-empty", "Nothing yet.");
  empty.id = "timeline-empty";
  const timeline = html("ol", "timeline");
  timeline.id = "timeline";
  timeline.setAttribute("aria-labelledby", "timeline-heading");

  panel.append(heading, graph, summary, legend, timelineHead, empty, timeline);
  return panel;
}
