// @ts-check
// The author's timestamp (`ts`, ms since the epoch) as people see it: the JavaScript twin of
// protocol/timestamps.py. Any integer from 0 to 2^53−1 is a valid `ts`, but Date ends at
// 8.64e15 ms and Python's datetime with the year 9999, so every renderer shows a date up to
// DISPLAY_MAX_MS and DISPLAY_OVERFLOW after it. Nothing here throws, whatever it is given.

/** The last millisecond of the year 9999 (UTC), as protocol.timestamps.DISPLAY_MAX_MS. */
export const DISPLAY_MAX_MS = 253402300799999;
/** What is shown for a timestamp past DISPLAY_MAX_MS. */
export const DISPLAY_OVERFLOW = "after 9999";

/**
 * Whether `ms` is a timestamp every renderer shows as a date.
 * @param {any} ms anything at all
 * @returns {boolean}
 */
export function displayable(ms) {
  return Number.isSafeInteger(ms) && ms >= 0 && ms <= DISPLAY_MAX_MS;
}

/**
 * `ms` as ISO 8601 (for a `<time>` element's dateTime), or null when it is no date.
 * @param {any} ms anything at all
 * @returns {string | null}
 */
export function isoTime(ms) {
  return displayable(ms) ? new Date(ms).toISOString() : null;
}

/** Fill a `<time>` element: `text(date)` as its text and the ISO date as its dateTime, or
 * DISPLAY_OVERFLOW and no dateTime for a timestamp that is no date.
 * @param {HTMLTimeElement} element
 * @param {number} ms
 * @param {(date: Date) => string} text
 */
export function setTime(element, ms, text) {
  const iso = isoTime(ms);
  if (iso === null) {
    element.textContent = DISPLAY_OVERFLOW;
    element.removeAttribute("datetime");
    return;
  }
  element.textContent = text(new Date(ms));
  element.dateTime = iso;
}
