// @ts-check
// Delivery that needs no particular link: what a device pulls, from a linked peer or from the
// server, and when. Pure rules, the clock passed in. The JavaScript twin of
// protocol/catchup.py (`CatchUp`).

import { holdsMore } from "./vector.js";

/**
 * The ids `device:seq` above our vector: messages we lack (malformed ids are skipped).
 * @param {Iterable<string>} ids
 * @param {Map<string, number>} ours
 * @returns {Set<string>}
 */
export function lacking(ids, ours) {
  const found = new Set();
  for (const id of ids) {
    const at = String(id).indexOf(":");
    const seq = String(id).slice(at + 1);
    if (at >= 0 && /^[0-9]+$/.test(seq) && Number(seq) > (ours.get(id.slice(0, at)) || 0)) {
      found.add(id);
    }
  }
  return found;
}

/** Seconds between two digests on a link, by default (protocol/catchup.py SYNC_INTERVAL). */
export const SYNC_INTERVAL = 3.0;
export const HINT_GAP = 0.25;
export const PULL_TIMEOUT = 10.0;
export const SERVER_PULL_DELAY = 0.2;

/**
 * What CatchUp decided: send a peer our vector's digest, pull from a peer, read the server.
 * @typedef {{kind: "digest" | "pull", device: string} | {kind: "pull_server"}} CatchUpEffect
 */

/**
 * What a device pulls, from whom and when: the twin of protocol/catchup.py CatchUp, the clock
 * (seconds) passed in. Effects: {kind: "digest", device} (send our vector's digest),
 * {kind: "pull", device} (send our vector), {kind: "pull_server"} (read the server's history).
 */
export class CatchUp {
  constructor({ interval = SYNC_INTERVAL, hintGap = HINT_GAP, pullTimeout = PULL_TIMEOUT,
                serverDelay = SERVER_PULL_DELAY } = {}) {
    if (!(interval > 0)) throw new RangeError("the digest interval must be positive");
    this.interval = interval;
    this.hintGap = hintGap;
    this.pullTimeout = pullTimeout;
    this.serverDelay = serverDelay;
    this.links = new Map(); // device -> {digestAt, lastDigest, pullingSince, again}
    this.named = new Set();
    this.serverAt = null;
    this.serverPulling = false;
  }

  /**
   * A data channel to `device` opened: pull from it, and compare digests from now on.
   * @param {string} device
   * @param {number} now
   */
  linkUp(device, now) {
    this.links.set(device, { digestAt: now + this.interval, lastDigest: null,
                             pullingSince: null, again: false });
    return this.pull(device, now);
  }

  /**
   * @param {string} device
   */
  linkDown(device) {
    this.links.delete(device);
  }

  /**
   * @param {string} device
   * @param {number} now
   */
  pulling(device, now) {
    const link = this.links.get(device);
    return Boolean(link) && this.inFlight(link, now);
  }

  /**
   * A linked peer's digest: if it differs from ours, pull (not while a pull is under way).
   * @param {string} device
   * @param {string} theirs
   * @param {string} ours
   * @param {number} now
   */
  digestReceived(device, theirs, ours, now) {
    const link = this.links.get(device);
    if (!link || theirs === ours || this.inFlight(link, now)) return [];
    return this.pull(device, now);
  }

  /**
   * A linked peer's vector (its pull): besides answering it, pull if it holds more.
   * @param {string} device
   * @param {Map<string, number>} theirs
   * @param {Map<string, number>} ours
   * @param {number} now
   */
  vectorReceived(device, theirs, ours, now) {
    const link = this.links.get(device);
    if (!link || !holdsMore(theirs, ours) || this.inFlight(link, now)) return [];
    return this.pull(device, now);
  }

  /**
   * The last batch of a peer's answer (more: false) arrived: the pull is over.
   * @param {string} device
   * @param {number} now
   */
  answerEnded(device, now) {
    const link = this.links.get(device);
    if (!link) return [];
    link.pullingSince = null;
    if (link.again) {
      link.again = false;
      return this.pull(device, now);
    }
    return [];
  }

  /**
   * A live message from `device` left a gap: pull from it (again, after the one under way).
   * @param {string} device
   * @param {number} now
   */
  gapSeen(device, now) {
    const link = this.links.get(device);
    if (!link) return [];
    if (this.inFlight(link, now)) {
      link.again = true;
      return [];
    }
    return this.pull(device, now);
  }

  /**
   * Fresh messages by `authors` came from `source` (a device, or null for the server): each
   * other linked peer that does not report an open channel to every author gets our digest
   * soon. `reports` maps a device to the Set of devices it reports open channels to.
   * @param {string | null} source
   * @param {Iterable<string>} authors
   * @param {Map<string, Set<string>>} reports
   * @param {number} now
   */
  fresh(source, authors, reports, now) {
    for (const [device, link] of this.links) {
      if (device === source) continue;
      const linked = reports.get(device);
      if ([...authors].every((a) => a === device || (linked && linked.has(a)))) continue;
      const earliest = link.lastDigest === null ? now : link.lastDigest + this.hintGap;
      link.digestAt = Math.min(link.digestAt, Math.max(now, earliest));
    }
  }

  /** The server stored these ids; those we lack are read from it soon, unless a peer
   * brings them first.
   * @param {Iterable<string>} ids
   * @param {Map<string, number>} ours
   * @param {number} now
   */
  serverNamed(ids, ours, now) {
    const missing = lacking(ids, ours);
    if (!missing.size) return;
    for (const id of missing) this.named.add(id);
    if (this.serverAt === null) this.serverAt = now + this.serverDelay;
  }

  serverPullEnded() {
    this.serverPulling = false;
  }

  /**
   * What is due at `now`: digests to send, and a server read for named ids still lacking.
   * @param {number} now
   * @param {Map<string, number>} ours
   * @param {boolean} serverUp
   */
  due(now, ours, serverUp) {
    /** @type {CatchUpEffect[]} */
    const effects = [];
    for (const device of [...this.links.keys()].sort()) {
      const link = this.links.get(device);
      if (now >= link.digestAt) {
        effects.push({ kind: "digest", device });
        link.lastDigest = now;
        link.digestAt = now + this.interval;
      }
    }
    if (this.named.size) {
      // A server that is down cannot be read; once back, the join reads its history.
      this.named = serverUp ? lacking(this.named, ours) : new Set();
      if (!this.named.size) this.serverAt = null;
    }
    if (this.named.size && serverUp && !this.serverPulling && this.serverAt !== null
        && now >= this.serverAt) {
      effects.push({ kind: "pull_server" });
      this.serverPulling = true;
      this.named = new Set();
      this.serverAt = null;
    }
    return effects;
  }

  /** When `due` next has something to say (null: only after new input). */
  nextDue() {
    const times = [...this.links.values()].map((l) => l.digestAt);
    if (this.named.size && this.serverAt !== null && !this.serverPulling) times.push(this.serverAt);
    return times.length ? Math.min(...times) : null;
  }

  /**
   * @param {string} device
   * @param {number} now
   * @returns {CatchUpEffect[]}
   */
  pull(device, now) {
    const link = this.links.get(device);
    if (!link) return [];
    link.pullingSince = now;
    return [{ kind: "pull", device }];
  }

  /**
   * @param {{pullingSince: number | null}} link
   * @param {number} now
   */
  inFlight(link, now) {
    return link.pullingSince !== null && now - link.pullingSince < this.pullTimeout;
  }
}
