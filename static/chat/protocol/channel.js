// @ts-check
// Channel frames: every frame type a data channel carries, and the room tag each frame but
// ping and pong carries. The JavaScript twin of protocol/channel.py.

import { InvalidEnvelope, ProtocolError } from "./errors.js";

// Every channel frame type, as protocol/channel.py lists them (a test holds the two equal).
// This peer relays no signals, so it refuses "sig" frames like any it cannot use.
export const FRAME_TYPES = ["msg", "vv", "vvd", "batch", "keys", "ack", "links", "sig", "ping", "pong"];

/**
 * A frame of `room` as sent on a data channel: `"room"` first, then the frame's own fields
 * (protocol/channel.py tag_room). Every frame but ping and pong belongs to a room.
 * @param {string} text
 * @param {string} room
 */
export function tagRoom(text, room) {
  return `{"room":${JSON.stringify(room)},${text.slice(1)}`;
}

/**
 * The frame a parsed room frame carries, once its room is checked to be `room` (the only room
 * this page is in); ProtocolError for a frame without a room or of another room.
 * @param {any} raw untrusted: parsed JSON
 * @param {string} room
 * @returns {any}
 */
export function untagRoom(raw, room) {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return raw;
  if (typeof raw.room !== "string") {
    throw new InvalidEnvelope("a channel frame needs 'room': the name of the room it belongs to");
  }
  if (raw.room !== room) {
    throw new ProtocolError(`a frame for room ${raw.room.slice(0, 64)}, not ${room}`, "not_in_room");
  }
  const frame = { ...raw };
  delete frame.room;
  return frame;
}
