// @ts-check
// Which messages a room's log holds, per device, without holding the messages: the highest
// seq with none missing below it (the version vector's entry), the highest seq held, and the
// few seqs held above a hole. The browser log keeps this in memory and in IndexedDB's `meta`
// (written with every group commit), so a page opening a room of any length reads it in
// one get instead of reading the room (docs/browser-peer.md, "A long room").

/** @typedef {{contiguous: number, highest: number, above: Set<number>}} DeviceHead */
/**
 * The heads as stored; `suspect` once a batch of this page failed to commit after its
 * messages were counted (the next open rebuilds the heads from the room's keys).
 * @typedef {{count: number, devices: Record<string, [number, number, number[]]>,
 *   suspect?: boolean}} StoredHeads
 */

export class Heads {
  constructor() {
    /** @type {Map<string, DeviceHead>} device -> its head */
    this.devices = new Map();
    /** How many messages the heads count, all devices together. */
    this.count = 0;
  }

  /**
   * Heads as `toStored()` wrote them; null for a value that is not one, or is suspect.
   * @param {unknown} value
   */
  static fromStored(value) {
    const stored = /** @type {StoredHeads | null} */ (value);
    if (!stored || typeof stored.count !== "number" || typeof stored.devices !== "object"
        || stored.suspect) return null;
    const heads = new Heads();
    for (const [device, [contiguous, highest, above]] of Object.entries(stored.devices)) {
      heads.devices.set(device, { contiguous, highest, above: new Set(above) });
    }
    heads.count = stored.count;
    return heads;
  }

  /**
   * Heads rebuilt from the log's primary keys, [room, device, seq].
   * @param {IDBValidKey[]} keys
   */
  static fromKeys(keys) {
    const heads = new Heads();
    for (const key of keys) {
      const [, device, seq] = /** @type {[string, string, number]} */ (key);
      heads.add(device, seq);
    }
    return heads;
  }

  /**
   * @param {boolean} [suspect]
   * @returns {StoredHeads}
   */
  toStored(suspect = false) {
    /** @type {Record<string, [number, number, number[]]>} */
    const devices = {};
    for (const [device, h] of this.devices) devices[device] = [h.contiguous, h.highest, [...h.above]];
    return suspect ? { count: this.count, devices, suspect } : { count: this.count, devices };
  }

  /**
   * @param {string} device
   * @param {number} seq
   */
  has(device, seq) {
    const head = this.devices.get(device);
    if (!head) return false;
    return seq <= head.contiguous ? seq >= 1 : head.above.has(seq);
  }

  /**
   * Count a message held; false if it was counted already.
   * @param {string} device
   * @param {number} seq
   */
  add(device, seq) {
    let head = this.devices.get(device);
    if (!head) {
      head = { contiguous: 0, highest: 0, above: new Set() };
      this.devices.set(device, head);
    }
    if (seq <= head.contiguous || head.above.has(seq)) return false;
    head.above.add(seq);
    while (head.above.delete(head.contiguous + 1)) head.contiguous++;
    head.highest = Math.max(head.highest, seq);
    this.count++;
    return true;
  }

  /** @param {string} device */
  highest(device) {
    const head = this.devices.get(device);
    return head ? head.highest : 0;
  }

  /** The version vector: per device, the highest seq held with none missing below. */
  vector() {
    const vector = new Map();
    for (const [device, head] of this.devices) if (head.contiguous) vector.set(device, head.contiguous);
    return vector;
  }

  /** Whether some device's log has a hole (a seq held above a missing one). */
  hasGaps() {
    for (const head of this.devices.values()) if (head.highest > head.contiguous) return true;
    return false;
  }
}
