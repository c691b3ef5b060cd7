// @ts-check
// Waiting for something, but not for ever.

/**
 * Settles when `promise` does or after `ms`, whichever comes first (a rejection of `promise`
 * passes through); the timer is cleared either way.
 * @param {Promise<unknown>} promise
 * @param {number} ms
 * @returns {Promise<void>}
 */
export async function within(promise, ms) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  try {
    await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
