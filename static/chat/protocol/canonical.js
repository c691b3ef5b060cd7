// @ts-check
// Canonical bytes, the exact bytes that get signed, and the UTF-8 size of a text: the
// JavaScript twin of protocol/canonical.py, with its signing domains.

export const ENVELOPE_DOMAIN = "gibberish/envelope/v1";
export const FINGERPRINT_DOMAIN = "gibberish/dtls-fingerprint/v1";
export const VECTOR_DIGEST_DOMAIN = "gibberish/vector-digest/v1";

const encoder = new TextEncoder();

/**
 * UTF-8 size of `text`; a lone surrogate counts 3 bytes, as Python's "surrogatepass".
 * @param {string} text
 */
export function utf8Size(text) {
  return encoder.encode(text).length;
}

/**
 * The domain-separated, length-prefixed bytes that get signed:
 * utf8(domain) 0x00 { uint32_be(len(utf8(field))) utf8(field) }, integers as decimal text.
 * @param {string} domain
 * @param {(string | number)[]} fields
 */
export function canonicalBytes(domain, fields) {
  if (domain.includes("\0")) throw new TypeError("a signing domain must not contain NUL");
  const parts = [encoder.encode(domain), new Uint8Array([0])];
  for (const field of fields) {
    let text;
    if (typeof field === "string") {
      if (!field.isWellFormed()) throw new TypeError("canonical fields must be valid Unicode");
      text = field;
    } else if (typeof field === "number" && Number.isSafeInteger(field)) {
      text = String(field);
    } else {
      throw new TypeError(`canonical fields are strings or safe integers, got ${typeof field}`);
    }
    const bytes = encoder.encode(text);
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, bytes.length, false);
    parts.push(length, bytes);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
