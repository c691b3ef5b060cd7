// @ts-check
// The rooms the browser page's device joined, remembered in this browser (localStorage, per
// user) with their unread counts, so that the page joins them again when it opens. The
// JavaScript twin of peer_agent/rooms_file.py (the agent remembers them in `rooms.json`).

/**
 * The localStorage key of `user`'s rooms.
 * @param {string} user
 */
export function savedKey(user) {
  return `gibberish:${user}:rooms`;
}

/**
 * The rooms remembered in this browser, and their unread counts.
 * @param {string} user
 */
export function loadRooms(user) {
  /** @type {{rooms: string[] | null, unread: Record<string, number>}} */
  const saved = { rooms: null, unread: {} };
  try {
    const raw = JSON.parse(localStorage.getItem(savedKey(user)) || "null");
    if (raw && Array.isArray(raw.rooms)) {
      saved.rooms = raw.rooms.filter((/** @type {unknown} */ r) => typeof r === "string");
    }
    if (raw && raw.unread && typeof raw.unread === "object") saved.unread = raw.unread;
  } catch {
    // Unreadable: start afresh.
  }
  return saved;
}

/**
 * Remember `user`'s rooms (the names in the order joined) and their unread counts.
 * @param {string} user
 * @param {Map<string, unknown>} joined room -> the room, in the order joined
 * @param {Map<string, number>} unread room -> messages from others not read yet
 * @param {Console} log
 */
export function saveRooms(user, joined, unread, log) {
  try {
    localStorage.setItem(savedKey(user), JSON.stringify({
      rooms: [...joined.keys()], unread: Object.fromEntries(unread) }));
  } catch (err) {
    log.warn(`could not remember the rooms: ${err.message}`);
  }
}
