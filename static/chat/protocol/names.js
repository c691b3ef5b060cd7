// @ts-check
// User and room names in normal form: the JavaScript twin of the checks in protocol/names.py.

const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;

/**
 * Whether `s` is a user (max 32) or room (max 64) name in normal form. JavaScript has no
 * Unicode case folding, so lower-casing stands in for it: a name this accepts and Python
 * refuses (e.g. one with "ß") cannot belong to a registered account, and every author is
 * checked against the key the server registered to that account anyway.
 * @param {unknown} s
 * @param {number} maxChars
 */
export function isNormalizedName(s, maxChars) {
  if (typeof s !== "string" || s.length === 0 || s.length > 1024) return false;
  const name = s.normalize("NFKC").toLowerCase().normalize("NFKC").trim();
  if (name !== s) return false;
  const chars = [...name];
  if (chars.length > maxChars || !LETTER_OR_DIGIT.test(chars[0])) return false;
  return chars.every((ch) => LETTER_OR_DIGIT.test(ch) || ch === "-" || ch === "_" || ch === ".");
}
