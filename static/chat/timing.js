// @ts-check
// Per-step User Timing of the browser peer's message path (performance.measure), for
// bench/browser.py and a person reading a Chromium profile. Off by default, so a page that
// lives for days does not grow the performance timeline: the benchmark switches it on
// (`timing.on = true` on this module, or `globalThis.gibberishTiming = true` before the
// page's modules load, as an init script can) and reads the measures named "gibberish: …"
// and the marks named "gibberish: link …" (the steps of each peer link's set-up).

export const PREFIX = "gibberish: ";

export const timing = {
  on: /** @type {any} */ (globalThis).gibberishTiming === true,

  /** Now, on the clock the measures use. */
  now() {
    return performance.now();
  },

  /**
   * Record the step `name` from `start` (a `timing.now()`) until now.
   * @param {string} name
   * @param {number} start
   */
  measure(name, start) {
    if (!this.on) return;
    performance.measure(PREFIX + name, { start, end: performance.now() });
  },

  /**
   * Mark that a step `name` of the link to `device` happened now.
   * @param {string} device
   * @param {string} name
   */
  linkStep(device, name) {
    if (!this.on) return;
    performance.mark(`${PREFIX}link ${device} ${name}`);
  },
};
