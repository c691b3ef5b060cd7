// @ts-check
// Hard limits of the protocol: the JavaScript twin of protocol/limits.py (a test holds the
// two equal).

export const MAX_TEXT_CHARS = 4000;
export const MAX_TEXT_BYTES = 12000;
export const MAX_FRAME_BYTES = 16384;
// Bytes a packed frame leaves free for its room tag (protocol/limits.py ROOM_TAG_BYTES).
export const ROOM_TAG_BYTES = 400;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const MAX_BATCH = 100;
export const MAX_VECTOR_DEVICES = 10000;
export const MAX_USERNAME_CHARS = 32;
export const MAX_ROOM_CHARS = 64;

/** How far past the receiver's clock (ms since the epoch) a Lamport time may lie. */
export const LAMPORT_LEAD_MS = 24 * 60 * 60 * 1000;
