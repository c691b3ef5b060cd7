// @ts-check
// Who is in a room, merged from the server's presence events in whatever order they arrive:
// the port of protocol/roster.py (its docstring gives the rules), run through the same
// interleavings by the tests. Entries carry the device's presence epoch; peer_left leaves a
// tombstone; a join reply drops only entries learned before its request went out.

const MAX_SAFE = 2 ** 53;

/**
 * A device of the room as the roster holds it.
 * @typedef {{user: string, device: string, public_key: string, epoch: number | null,
 *   generation: number}} RosterEntry
 */

/**
 * The presence epoch a server event gives, or null for a missing or malformed one.
 * @param {any} value untrusted: from the server
 * @returns {number | null}
 */
export function epochOf(value) {
  return Number.isSafeInteger(value) && value >= 0 && value < MAX_SAFE ? value : null;
}

/** The room's other devices for device `me`, merged by epoch and generation. */
export class Roster {
  /** @param {string} me */
  constructor(me) {
    this.me = me;
    this.generation = 0;
    /** @type {Map<string, RosterEntry>} */
    this.entries = new Map();
    /** @type {Map<string, number>} device -> the newest epoch that left */
    this.gone = new Map();
  }

  /** @param {string} device */
  has(device) { return this.entries.has(device); }

  /** @param {string} device */
  get(device) { return this.entries.get(device); }

  /** A join request is going out: the generation its reply belongs to. */
  beginJoin() {
    this.generation += 1;
    return this.generation;
  }

  /**
   * Take a peer_joined peer (or a signal's sender); whether the roster changed.
   * @param {any} peer untrusted: from the server
   */
  joined(peer) {
    const device = String((peer && peer.device) || "");
    const epoch = epochOf(peer && peer.epoch);
    if (!device || device === this.me) return false;
    if (epoch !== null && (this.gone.get(device) ?? -1) >= epoch) return false;
    const known = this.entries.get(device);
    if (known && known.epoch !== null && epoch !== null && known.epoch > epoch) return false;
    const entry = {
      user: String(peer.user ?? ""), device, public_key: String(peer.public_key ?? ""),
      epoch: epoch !== null ? epoch : (known ? known.epoch : null),
      generation: this.generation,
    };
    this.entries.set(device, entry);
    return !known || known.user !== entry.user || known.public_key !== entry.public_key;
  }

  /**
   * Take a peer_left; whether the device was removed.
   * @param {string} device
   * @param {any} [epochValue] untrusted: from the server
   */
  left(device, epochValue = null) {
    const epoch = epochOf(epochValue);
    if (epoch !== null) this.gone.set(device, Math.max(this.gone.get(device) ?? -1, epoch));
    const known = this.entries.get(device);
    if (!known) return false;
    if (epoch !== null && known.epoch !== null && known.epoch > epoch) return false;
    this.entries.delete(device);
    return true;
  }

  /**
   * Merge the reply to the join request of `generation`; `keep` are devices to keep even if
   * it does not list them (their data channel is open).
   * @param {any[]} peers untrusted: from the server
   * @param {number} generation
   * @param {Set<string>} [keep]
   */
  snapshot(peers, generation, keep = new Set()) {
    const listed = new Set();
    for (const peer of peers) {
      this.joined(peer);
      listed.add(String((peer && peer.device) || ""));
    }
    for (const [device, entry] of [...this.entries]) {
      if (!listed.has(device) && entry.generation < generation && !keep.has(device)) {
        this.entries.delete(device);
      }
    }
  }
}
