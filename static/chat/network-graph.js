// @ts-check
// The graph of the Network panel (docs/network-view.md): this device, its peers and the
// server, drawn from the backend's `state`. NetworkView (network.js) keeps what was last
// drawn and calls renderState; buildNetworkPanel (network.js) sizes the empty <svg> by W, CY, RY.
//
// The graph is plain SVG built with createElementNS, no library: a room is a handful of
// devices, so a fixed layout beats a force simulation (no jitter, no dependency, the same
// picture for the same state). This device sits in the middle and the server straight above
// it; the room's other devices (linked now or seen before) are spread evenly over the rest
// of a circle around it, sorted by user and device so a node keeps its place while its link
// comes and goes. Every link is a spoke from the middle, so no two cross. Each peer's name,
// device and link state (with its round-trip time) sit together outside the circle, away
// from the spokes; the wedge above this device holds the server link's label on the right
// and this device's name on the left, and no peer is placed there. The viewBox scales the
// drawing to the panel's width, on a phone as on a desktop.
//
// Nothing here is guessed: every node, edge and label comes from the state the backend
// reports. User text (names) only ever goes through textContent.

const SVG = "http://www.w3.org/2000/svg";

export const W = 360; // viewBox width; its height follows what is drawn
const CX = W / 2;
const RX = 122; // the ellipse the peers sit on
export const RY = 112;
const SELF_R = 25;
const PEER_R = 18;
const SERVER_W = 72;
const SERVER_H = 32;
const TOP = 8; // room above the server node
export const CY = TOP + SERVER_H + RY - 10;
const SERVER_Y = TOP + SERVER_H / 2; // the server node's centre
const LINE = 14; // label line height
const GAP = 4; // between a node and its label
const FREE_WEDGE = 45; // degrees either side of straight up kept free of peers
const NAME_MAX = 16; // characters of a name shown before an ellipsis (the full one in a tooltip)
// From this many other devices on, a node's label drops its device line and names get shorter.
const CROWDED = 5;
const CROWDED_NAME_MAX = 10;

/** @typedef {{label: string, help: string}} Named */

/**
 * What each link state is called on the graph and in the legend.
 * @type {Record<string, Named>}
 */
export const LINK_STATES = {
  connected: { label: "connected", help: "direct data channel open" },
  connecting: { label: "connecting…", help: "setting up the channel" },
  disconnected: { label: "interrupted", help: "no answer for a few seconds: the connection is "
    + "kept in case it recovers" },
  failed: { label: "failed", help: "no answer, retrying" },
  closed: { label: "closed", help: "channel closed" },
};

/** @type {Record<string, string>} */
const SERVER_STATES = {
  connected: "server connected",
  connecting: "connecting to server…",
  down: "server down",
};

/**
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {string} [text]
 */
export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {unknown} device */
export function shortDevice(device) {
  return String(device || "").slice(0, 6);
}

/**
 * @param {unknown} name
 * @param {number} [max]
 */
function shortName(name, max = NAME_MAX) {
  const text = String(name ?? "?");
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** @param {number | null | undefined} ms */
function formatRtt(ms) {
  if (ms == null || !Number.isFinite(ms)) return "";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** @param {number} deg */
function rad(deg) {
  return (deg * Math.PI) / 180;
}

/**
 * A point on the ellipse around this device (or a circle of radius r).
 * @param {number} angle
 * @param {number} [rx]
 * @param {number} [ry]
 */
function around(angle, rx = RX, ry = rx === RX ? RY : rx) {
  return { x: CX + rx * Math.cos(rad(angle)), y: CY + ry * Math.sin(rad(angle)) };
}

/**
 * A <text> at (x, y): `lines` is a list of lines, each a list of [text, className] pieces.
 * `anchor` is the SVG text-anchor; `place` says whether the block hangs below y ("below"),
 * stands above it ("above") or is centred on it ("middle").
 * @param {number} x
 * @param {number} y
 * @param {string[][][]} lines
 * @param {{anchor?: string, place?: string, className?: string}} [options]
 */
function textBlock(x, y, lines, { anchor = "middle", place = "below", className = "" } = {}) {
  const text = svg("text", { x, y, "text-anchor": anchor, class: `graph-label ${className}` });
  let first; // the first line's baseline, relative to y
  if (place === "below") first = 11;
  else if (place === "above") first = -(lines.length - 1) * LINE - 4;
  else first = 4 - ((lines.length - 1) * LINE) / 2;
  lines.forEach((pieces, i) => {
    pieces.forEach(([content, cls], j) => {
      const span = svg("tspan", j === 0 ? { x, dy: i === 0 ? first : LINE } : {}, content);
      if (cls) span.setAttribute("class", cls);
      text.append(span);
    });
  });
  return text;
}

/** @type {Record<string, number>} */
const HEALTH = { connected: 3, disconnected: 2, connecting: 1, failed: 0, closed: 0 };

/**
 * Which way an open link goes, from its selected ICE candidate pair ({kind, local, remote,
 * local_address, remote_address}, kind the less direct of the two candidate types): a short
 * label for the graph and a sentence for its title. No path: messages to that peer travel
 * through other peers or the server.
 * @type {Record<string, Named>}
 */
export const PATH_KINDS = {
  host: { label: "direct", help: "direct between the two devices' own addresses" },
  prflx: { label: "direct", help: "direct, to an address learned from the other side's "
    + "checks (peer-reflexive)" },
  srflx: { label: "through NAT", help: "direct through a NAT, to the address a STUN server "
    + "saw (server-reflexive)" },
  relay: { label: "TURN relay", help: "relayed by the TURN server" },
};

/** @param {any} path a path as the backend reports it, or null */
export function describePath(path) {
  if (!path || !PATH_KINDS[path.kind]) {
    return "no direct link: messages travel through other peers or the server";
  }
  return `${PATH_KINDS[path.kind].help} (this end ${path.local} ${path.local_address}, `
    + `theirs ${path.remote} ${path.remote_address})`;
}

/**
 * The data channels between the other devices, from what each peer reports of its own
 * (state.peers[i].links): one per pair of devices on the graph, in the less healthy of the
 * two ends' states, with their mean round-trip time when both say it is open.
 * @param {any[]} peers as the backend reports them
 * @param {Map<string, unknown>} onGraph
 */
function reportedLinks(peers, onGraph) {
  /** @type {Map<string, {a: string, b: string, state: string, rtts: number[]}>} */
  const pairs = new Map();
  for (const p of peers) {
    for (const l of Array.isArray(p.links) ? p.links : []) {
      if (!onGraph.has(l.device) || l.device === p.device || !(l.state in HEALTH)) continue;
      const [a, b] = p.device < l.device ? [p.device, l.device] : [l.device, p.device];
      const key = `${a} ${b}`;
      const known = pairs.get(key) || { a, b, state: l.state, rtts: /** @type {number[]} */ ([]) };
      if (HEALTH[l.state] < HEALTH[known.state]) known.state = l.state;
      if (Number.isFinite(l.rtt_ms)) known.rtts.push(l.rtt_ms);
      pairs.set(key, known);
    }
  }
  return [...pairs.values()].map((pair) => ({ ...pair, rtt_ms: pair.state === "connected"
    && pair.rtts.length ? pair.rtts.reduce((x, y) => x + y, 0) / pair.rtts.length : null }));
}

/**
 * @param {{user: string, device: string}} a
 * @param {{user: string, device: string}} b
 */
function byUserThenDevice(a, b) {
  if (a.user !== b.user) return a.user < b.user ? -1 : 1;
  return a.device < b.device ? -1 : a.device > b.device ? 1 : 0;
}

/**
 * What renderState reads and keeps between drawings: NetworkView's graph and summary elements
 * and the state last drawn.
 * @typedef {{graph: SVGSVGElement, summary: HTMLElement, shape: string | null,
 *   serverEdge: Element | null, devices: any[] | null}} GraphView
 */

/**
 * Draw the graph of a state. When only the outbox count changed since the last drawing (it
 * moves with every message sent), only the server link's label and the summary are redrawn.
 * @param {GraphView} view
 * @param {any} state the backend's state()
 */
export function renderState(view, state) {
  /** @type {any[]} */
  const peers = Array.isArray(state.peers) ? state.peers : [];
  /** @type {any[]} */
  const offline = Array.isArray(state.offline) ? state.offline : [];
  const server = state.server || {};
  const serverState = server.state || (server.connected ? "connected" : "down");
  const outbox = Number(server.outbox) || 0;
  const shape = JSON.stringify({ ...state, server: { ...server, outbox: 0 } });
  if (shape === view.shape && view.serverEdge && view.devices) {
    const edge = drawServerEdge(serverState, outbox);
    view.serverEdge.replaceWith(edge);
    view.serverEdge = edge;
    describeAll(view, view.devices, serverState, outbox);
    return;
  }
  view.shape = shape;

  // Every other device of the room, linked or not, in a stable order, spread over the
  // circle but for the wedge above this device.
  const linked = new Set(peers.map((p) => p.device));
  const devices = [
    ...peers.map((p) => ({ ...p, kind: "peer" })),
    ...offline.filter((o) => !linked.has(o.device) && o.device !== state.device)
      .map((o) => ({ ...o, kind: "offline", state: "offline" })),
  ].sort(byUserThenDevice);
  const first = -90 + FREE_WEDGE;
  const span = 360 - 2 * FREE_WEDGE;
  devices.forEach((d, i) => {
    d.angle = first + (span * (i + 0.5)) / devices.length;
    Object.assign(d, around(d.angle));
  });

  const presence = svg("g", { class: "presence-edges" });
  const between = svg("g", { class: "reported-edges" });
  const edges = svg("g", { class: "edges" });
  const nodes = svg("g", { class: "nodes" });
  let bottom = CY + SELF_R;

  // Thin dashed lines: the devices the server lists as present in the room now. While this
  // device's server link is not up, that list is only the last one heard: not drawn.
  for (const d of devices) {
    if (d.kind !== "peer" || !d.on_server || serverState !== "connected") continue;
    const g = svg("g", { class: "edge presence", "data-kind": "presence", "data-device": d.device });
    g.append(svg("line", { x1: CX, y1: SERVER_Y, x2: d.x, y2: d.y }));
    g.append(svg("title", {}, `the server lists ${d.user} as present`));
    presence.append(g);
  }

  // Thinner lines: the data channels between the other devices, as they report them.
  const where = new Map(devices.map((d) => [d.device, d]));
  for (const pair of reportedLinks(peers, where)) {
    const a = where.get(pair.a);
    const b = where.get(pair.b);
    const length = Math.hypot(b.x - a.x, b.y - a.y) || 1;
    const ux = (b.x - a.x) / length;
    const uy = (b.y - a.y) / length;
    const g = svg("g", { class: `edge reported ${pair.state}`, "data-kind": "reported",
      "data-from": pair.a, "data-to": pair.b, "data-state": pair.state });
    g.append(svg("line", { x1: a.x + ux * PEER_R, y1: a.y + uy * PEER_R,
      x2: b.x - ux * PEER_R, y2: b.y - uy * PEER_R }));
    const rtt = formatRtt(pair.rtt_ms);
    g.append(svg("title", {}, `link between ${a.user} and ${b.user}, as they report it: `
      + `${LINK_STATES[pair.state].label}${rtt ? `, round trip ${rtt}` : ""}`));
    between.append(g);
  }

  // This device's link to the server, labelled on its right.
  view.serverEdge = drawServerEdge(serverState, outbox);
  edges.append(view.serverEdge);

  // The other devices: a node, then outside it the name, the device and (for a peer) the
  // link's state and round-trip time, as one block; its last line belongs to the edge. A
  // block on the right of the circle ends at its node's right edge, one on the left starts
  // at its left edge, so that neither runs out of the picture. In a crowded room the device
  // line goes (it stays in the tooltip).
  const crowded = devices.length >= CROWDED;
  const nameMax = crowded ? CROWDED_NAME_MAX : NAME_MAX;
  for (const d of devices) {
    const c = Math.cos(rad(d.angle));
    const place = Math.sin(rad(d.angle)) < -0.5 ? "above" : "below";
    const anchor = c > 0.45 ? "end" : c < -0.45 ? "start" : "middle";
    const x = anchor === "end" ? d.x + PEER_R + 2 : anchor === "start" ? d.x - PEER_R - 2 : d.x;
    const y = place === "below" ? d.y + PEER_R + GAP : d.y - PEER_R - GAP;
    const nameLines = crowded ? 1 : 2;
    const lines = nameLines + (d.kind === "peer" ? 1 : 0);
    // Above the node the block stands on its last line; below it hangs from its first.
    const nameY = place === "below" ? y : y - (lines - nameLines) * LINE;
    const stateY = place === "below" ? y + nameLines * LINE : y;
    bottom = Math.max(bottom, place === "below" ? y + lines * LINE : d.y + PEER_R);

    if (d.kind === "peer") {
      const state = LINK_STATES[d.state] ? d.state : "connecting";
      const path = d.state === "connected" && d.path && PATH_KINDS[d.path.kind] ? d.path : null;
      const g = svg("g", { class: `edge peer-link ${state}${path ? ` path-${path.kind}` : ""}`,
        "data-kind": "peer", "data-device": d.device, "data-state": d.state,
        "data-path": path ? path.kind : "none" });
      const from = around(d.angle, SELF_R);
      const to = around(d.angle, Math.hypot(d.x - CX, d.y - CY) - PEER_R);
      g.append(svg("line", { x1: from.x, y1: from.y, x2: to.x, y2: to.y }));
      const rtt = d.state === "connected" ? formatRtt(d.rtt_ms) : "";
      // Only an open channel has a round-trip time: in a crowded room it says "connected".
      const pieces = crowded && rtt ? [] : [[LINK_STATES[state].label, "edge-state"]];
      if (rtt) pieces.push(...(pieces.length ? [[" · ", "sep"]] : []), [rtt, "rtt"]);
      // A relayed link says so even in a crowded room: it costs the TURN server's hop.
      if (path && (!crowded || path.kind === "relay")) {
        pieces.push(...(pieces.length ? [[" · ", "sep"]] : []),
          [PATH_KINDS[path.kind].label, "path"]);
      }
      g.append(textBlock(x, stateY, [pieces], { anchor, place, className: "edge-label" }));
      g.append(svg("title", {}, `link to ${d.user}: ${LINK_STATES[state].help}`
        + (rtt ? `, round trip ${rtt}` : "") + `; ${describePath(path)}`));
      edges.append(g);
    }

    const g = svg("g", { class: `node ${d.kind} ${d.state}`, "data-kind": d.kind,
      "data-device": d.device, "data-state": d.state });
    g.append(svg("circle", { cx: d.x, cy: d.y, r: PEER_R }));
    g.append(svg("text", { x: d.x, y: d.y + 5, "text-anchor": "middle", class: "node-mark" },
      String(d.user || "?").slice(0, 1).toUpperCase()));
    const device = d.kind === "offline" ? `${shortDevice(d.device)} · offline` : shortDevice(d.device);
    const name = [[shortName(d.user, nameMax), "name"]];
    if (crowded && d.kind === "offline") name.push([" · offline", "device"]);
    g.append(textBlock(x, nameY, crowded ? [name] : [name, [[device, "device"]]],
      { anchor, place, className: "node-label" }));
    g.append(svg("title", {}, `${d.user}, device ${d.device}`
      + (d.kind === "offline" ? " (offline: seen before, not in the room now)" : "")));
    nodes.append(g);
  }

  // The server, straight above this device.
  {
    const g = svg("g", { class: `node server ${serverState}`, "data-kind": "server",
      "data-device": "server", "data-state": serverState });
    g.append(svg("rect", { x: CX - SERVER_W / 2, y: SERVER_Y - SERVER_H / 2,
      width: SERVER_W, height: SERVER_H, rx: 8 }));
    g.append(svg("text", { x: CX, y: SERVER_Y + 5, "text-anchor": "middle",
      class: "node-mark" }, "server"));
    let host = "";
    try { host = server.url ? new URL(server.url).host : ""; } catch { host = ""; }
    g.append(svg("title", {}, `the server${host ? " " + host : ""}: ${serverState}`));
    nodes.append(g);
  }

  // This device, in the middle, its name in the free wedge left of the server link.
  {
    const g = svg("g", { class: "node self", "data-kind": "self", "data-device": state.device || "" });
    g.append(svg("circle", { cx: CX, cy: CY, r: SELF_R }));
    g.append(svg("text", { x: CX, y: CY + 5, "text-anchor": "middle", class: "node-mark" }, "you"));
    g.append(textBlock(CX - 8, CY - SELF_R - 2, [[[shortName(state.user), "name"]],
      [[shortDevice(state.device), "device"]]],
    { anchor: "end", place: "above", className: "node-label self-label" }));
    g.append(svg("title", {}, `you: ${state.user}, this device ${state.device}`));
    nodes.append(g);
  }

  view.graph.setAttribute("viewBox", `0 0 ${W} ${Math.ceil(bottom + 6)}`);
  view.graph.replaceChildren(
    svg("title", {}, "The room's network as this device sees it"),
    presence, between, edges, nodes);
  view.devices = devices;
  describeAll(view, devices, serverState, outbox);
}

/**
 * @param {GraphView} view
 * @param {any[]} devices
 * @param {string} serverState
 * @param {number} outbox
 */
function describeAll(view, devices, serverState, outbox) {
  const sentence = describe(devices, serverState, outbox);
  view.graph.setAttribute("aria-label", sentence);
  view.summary.textContent = sentence;
}

/**
 * The line from this device to the server, with its state and outbox count.
 * @param {string} serverState
 * @param {number} outbox
 */
function drawServerEdge(serverState, outbox) {
  const g = svg("g", { class: `edge server-link ${serverState}`, "data-kind": "server",
    "data-state": serverState, "data-outbox": outbox });
  const top = SERVER_Y + SERVER_H / 2;
  g.append(svg("line", { x1: CX, y1: CY - SELF_R, x2: CX, y2: top }));
  /** @type {Record<string, string>} */
  const words = { connected: "connected", connecting: "connecting…", down: "down" };
  g.append(textBlock(CX + 8, (CY - SELF_R + top) / 2, [
    [[words[serverState] || serverState, "edge-state"]],
    [[`outbox ${outbox}`, outbox > 0 ? "outbox waiting" : "outbox"]],
  ], { anchor: "start", place: "middle", className: "edge-label" }));
  g.append(svg("title", {}, `${SERVER_STATES[serverState] || serverState}; `
    + `${outbox} message${outbox === 1 ? "" : "s"} waiting to be uploaded`));
  return g;
}

/**
 * The graph in one sentence, for screen readers and the line under the graph.
 * @param {any[]} devices
 * @param {string} serverState
 * @param {number} outbox
 */
function describe(devices, serverState, outbox) {
  const peers = devices.filter((d) => d.kind === "peer");
  const up = peers.filter((d) => d.state === "connected").length;
  const relayed = peers.filter((d) => d.state === "connected" && d.path
    && d.path.kind === "relay").length;
  const offline = devices.length - peers.length;
  const parts = [
    `${SERVER_STATES[serverState] || serverState}`
      + (outbox > 0 ? ` (${outbox} waiting in the outbox)` : ""),
    peers.length === 0 ? "no peers in the room"
      : `${up} of ${peers.length} peer${peers.length === 1 ? "" : "s"} linked`
        + (relayed ? ` (${relayed} through the TURN relay)` : " directly"),
  ];
  if (offline > 0) parts.push(`${offline} offline`);
  return parts.join(" · ");
}
