// @ts-check
// The routing of the browser page's channel frames to their rooms: the device's mesh hands
// every frame here (browser-device.js); it is parsed once and handed to the room it names
// if that room lists its sender, held a moment if not yet (its sender may have read the
// room's roster before this page heard that it joined), and refused otherwise
// (`not_in_room`). The frame rules of peer_agent/device.py (its _on_frame, _hold, admitted
// and _refuse), which keeps them in the device.

import { InvalidEnvelope, ProtocolError } from "./protocol/errors.js";
import { parseFrame } from "./protocol/strict-json.js";

/** @typedef {import("./browser-mesh.js").Peer} Peer */
/** @typedef {import("./browser-peer.js").BrowserPeer} BrowserPeer */

// A frame of a room whose roster does not list its sender yet is held this long (at most
// EARLY_FRAMES_MAX per room and sender), then refused as not_in_room (device.py's rule).
const EARLY_FRAME_HOLD_MS = 3000;
// A frame for a room whose log is still loading is held longer: the page's other rooms load
// after the shown one has linked (up to 3 s, browser-device.js), then join.
const LOADING_FRAME_HOLD_MS = 8000;
const EARLY_FRAMES_MAX = 64;

export class FrameRouter {
  /**
   * @param {{joined: Map<string, BrowserPeer>, roomsOf: (device: string) => BrowserPeer[],
   *   log: Console}} device the device's rooms (room -> the room, in the order joined), the
   *   rooms that list a device, and its log
   */
  constructor({ joined, roomsOf, log }) {
    this.joined = joined;
    this.roomsOf = roomsOf;
    this.log = log;
    /** @type {Record<string, number>} refusals of frames no room could take */
    this.refused = {};
    /** @type {Map<string, {held: {peer: Peer, frame: unknown}[], timer: ReturnType<typeof setTimeout>}>} */
    this.early = new Map();
  }

  /**
   * A frame from a data channel: parsed once, handed to its room if the room lists the
   * sender, held a moment if not yet, refused otherwise.
   * @param {Peer} peer
   * @param {string} text
   */
  onFrame(peer, text) {
    let raw;
    try {
      raw = parseFrame(text);
    } catch (err) {
      this.refuse(peer, err);
      return;
    }
    const room = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? raw.room : null;
    if (typeof room !== "string") {
      this.refuse(peer, new InvalidEnvelope(
        "a channel frame needs 'room': the name of the room it belongs to"));
      return;
    }
    const target = this.joined.get(room);
    if (!target) {
      this.refuse(peer, new ProtocolError(`a frame for room ${room.slice(0, 64)}, which this `
        + "page is not in", "not_in_room"));
    } else if (!target.mesh || !target.mesh.peers.has(peer.device)) {
      // Not listed yet, or the room's log still loading (the page's other rooms load after
      // the shown one): its join will list the sender.
      this.hold(room, peer, raw, target.mesh ? EARLY_FRAME_HOLD_MS : LOADING_FRAME_HOLD_MS);
    } else {
      target.onFrame(peer, raw);
    }
  }

  /**
   * Keep a frame from a device the room does not list (yet), until the room admits it or
   * EARLY_FRAME_HOLD_MS passes.
   * @param {string} room
   * @param {Peer} peer
   * @param {unknown} frame
   */
  hold(room, peer, frame, holdMs = EARLY_FRAME_HOLD_MS) {
    const key = JSON.stringify([room, peer.device]);
    let early = this.early.get(key);
    if (!early) {
      const timer = setTimeout(() => {
        const expired = this.early.get(key);
        this.early.delete(key);
        for (const { peer: from } of expired ? expired.held : []) {
          this.refuse(from, new ProtocolError(`a frame for room ${room.slice(0, 64)}, which has `
            + `not listed the sender within ${holdMs / 1000} s`, "not_in_room"));
        }
      }, holdMs);
      early = { held: [], timer };
      this.early.set(key, early);
    }
    if (early.held.length < EARLY_FRAMES_MAX) early.held.push({ peer, frame });
    else {
      this.refuse(peer, new ProtocolError(`too many frames for room ${room.slice(0, 64)} before `
        + "it lists the sender", "not_in_room"));
    }
  }

  /**
   * The room now lists `device`: hand it the frames held for it, in order.
   * @param {string} room
   * @param {string} device
   */
  admitted(room, device) {
    const key = JSON.stringify([room, device]);
    const early = this.early.get(key);
    if (!early) return;
    this.early.delete(key);
    clearTimeout(early.timer);
    const target = this.joined.get(room);
    for (const { peer, frame } of early.held) if (target) target.onFrame(peer, frame);
  }

  /**
   * Refuse a frame: in each room that lists its sender (its network view says so), or on
   * the device's own count if none does.
   * @param {Peer} peer
   * @param {Error & {code?: string}} err
   */
  refuse(peer, err) {
    const rooms = this.roomsOf(peer.device);
    for (const room of rooms) room.refuse(peer, err);
    if (rooms.length) return;
    const code = err.code || "error";
    this.refused[code] = (this.refused[code] || 0) + 1;
    this.log.warn(`refused a frame from ${peer.user} (${peer.device}): ${err.message}`);
  }
}
