// @ts-check
// The messages a chat page holds: a window of them (the newest WINDOW once the reader is at
// the bottom, more while they read older pages), in display order (lamport, device, seq),
// in memory and in the DOM. Inserting one costs a binary search and one DOM insertion,
// whatever the room's length; older messages are paged in from the backend on demand.

/** How many messages the page keeps when the reader is at the newest ones. */
export const WINDOW = 200;

/**
 * A message as the backends give it to the page: its order key, its id and what is shown.
 * @typedef {{id: string, lamport: number, device: string, seq: number} & Record<string, any>}
 *   Message
 */
/** @typedef {{message: Message, node: Element}} Entry */

/**
 * Display order of two messages: (lamport, device, seq).
 * @param {Message} a
 * @param {Message} b
 */
export function compare(a, b) {
  if (a.lamport !== b.lamport) return a.lamport < b.lamport ? -1 : 1;
  if (a.device !== b.device) return a.device < b.device ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/**
 * The page token of a message: the backends page with `before=<lamport>.<device>.<seq>`.
 * @param {Message} m
 */
export function tokenOf(m) {
  return `${m.lamport}.${m.device}.${m.seq}`;
}

export class MessageWindow {
  /**
   * `list` is the <ol> the nodes go in; `render(message)` makes one message's node.
   * @param {Element} list
   * @param {(message: Message) => Element} render
   */
  constructor(list, render) {
    this.list = list;
    this.render = render;
    /** @type {Entry[]} in display order */
    this.entries = [];
    /** @type {Map<string, Entry>} id -> entry */
    this.byId = new Map();
  }

  get size() {
    return this.entries.length;
  }

  /** @param {string} id */
  get(id) {
    return this.byId.get(id);
  }

  oldest() {
    return this.entries.length ? this.entries[0].message : null;
  }

  /**
   * Index of the first held message after `m` in display order (binary search).
   * @param {Message} m
   */
  position(m) {
    let low = 0;
    let high = this.entries.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (compare(this.entries[mid].message, m) > 0) high = mid;
      else low = mid + 1;
    }
    return low;
  }

  /**
   * Show `m` at its place and return its entry; null when it belongs before the oldest held
   * message while older ones are not loaded (it shows when that page is read).
   * @param {Message} m
   * @param {boolean} olderUnloaded
   * @returns {Entry | null}
   */
  insert(m, olderUnloaded) {
    const n = this.entries.length;
    // Fast path: a new message nearly always goes last.
    const at = !n || compare(this.entries[n - 1].message, m) < 0 ? n : this.position(m);
    if (at === 0 && n && olderUnloaded) return null;
    const entry = { message: m, node: this.render(m) };
    if (at === n) this.list.append(entry.node);
    else this.list.insertBefore(entry.node, this.entries[at].node);
    this.entries.splice(at, 0, entry);
    this.byId.set(m.id, entry);
    return entry;
  }

  /**
   * Drop the oldest messages beyond `keep`; true if any went.
   * @param {number} keep
   */
  trimOldest(keep) {
    const drop = this.entries.length - keep;
    if (drop <= 0) return false;
    for (const entry of this.entries.splice(0, drop)) {
      entry.node.remove();
      this.byId.delete(entry.message.id);
    }
    return true;
  }
}
