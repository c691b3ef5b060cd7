// @ts-check
// JSON frames as every receiver reads them before anything else: the strict JSON policy and
// the frame size limit. The JavaScript twin of protocol/strict_json.py and protocol/frames.py;
// with the two helpers for untrusted parsed JSON the other modules share (isPlainObject, short).

import { utf8Size } from "./canonical.js";
import { FrameTooLarge, InvalidEnvelope } from "./errors.js";
import { MAX_FRAME_BYTES } from "./limits.js";

/**
 * A JSON number that is not a safe integer (it has a fraction or an exponent, or is too large
 * to read exactly). Kept apart so that an integer field never accepts it, as Python refuses a
 * float where an integer is expected; `text` is the number exactly as it was sent.
 */
export class JsonNumber {
  /** @param {string} text */
  constructor(text) {
    this.text = text;
    this.value = Number(text);
  }
}

const STRING_TOKEN = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER_TOKEN = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
// The JSON policy of protocol/strict_json.py, which every Python receiver applies to frames.
export const MAX_JSON_DEPTH = 32;
export const MAX_INT_DIGITS = 64;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * @param {string} text
 * @returns {any}
 */
function parseStrictJSON(text) {
  let i = 0;
  /** @type {(what: string) => never} */
  const bad = (what) => { throw new InvalidEnvelope(`frame is not valid JSON: ${what} at ${i}`); };
  const space = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const string = () => {
    STRING_TOKEN.lastIndex = i;
    const m = STRING_TOKEN.exec(text);
    if (!m) bad("invalid string");
    i += m[0].length;
    const parsed = JSON.parse(m[0]);
    if (LONE_SURROGATE.test(parsed)) bad("a string holds a lone surrogate");
    return parsed;
  };
  /** @param {number} depth */
  const nest = (depth) => {
    if (depth + 1 > MAX_JSON_DEPTH) bad(`nested too deeply: at most ${MAX_JSON_DEPTH} levels`);
  };
  /** @type {(depth: number) => any} */
  const value = (depth) => {
    space();
    const c = text[i];
    if (c === "{") {
      nest(depth);
      i++;
      const obj = {};
      const seen = new Set();
      space();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        space();
        if (text[i] !== '"') bad("expected a key");
        const key = string();
        if (seen.has(key)) bad(`key ${short(key)} appears more than once`);
        seen.add(key);
        space();
        if (text[i] !== ":") bad("expected ':'");
        i++;
        // defineProperty: a key "__proto__" stays a plain property.
        Object.defineProperty(obj, key, {
          value: value(depth + 1), enumerable: true, writable: true, configurable: true,
        });
        space();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "}") { i++; return obj; }
        bad("expected ',' or '}'");
      }
    }
    if (c === "[") {
      nest(depth);
      i++;
      /** @type {unknown[]} */
      const arr = [];
      space();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value(depth + 1));
        space();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "]") { i++; return arr; }
        bad("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) { i += 4; return true; }
    if (text.startsWith("false", i)) { i += 5; return false; }
    if (text.startsWith("null", i)) { i += 4; return null; }
    NUMBER_TOKEN.lastIndex = i;
    const m = NUMBER_TOKEN.exec(text);
    if (!m) bad("unexpected character");
    i += m[0].length;
    if (m[1] || m[2]) {
      if (m[0].length > 2 * MAX_INT_DIGITS) bad(`number longer than ${2 * MAX_INT_DIGITS} characters`);
      if (!Number.isFinite(Number(m[0]))) bad("number too large");
      return new JsonNumber(m[0]);
    }
    if (m[0].replace("-", "").length > MAX_INT_DIGITS) bad(`number has more than ${MAX_INT_DIGITS} digits`);
    const n = Number(m[0]);
    return Number.isSafeInteger(n) ? n : new JsonNumber(m[0]);
  };
  const result = value(0);
  space();
  if (i !== text.length) bad("extra data");
  return result;
}

/**
 * @param {number} size
 */
function checkFrameSize(size) {
  if (size > MAX_FRAME_BYTES) {
    throw new FrameTooLarge(
      `frame is too large: at most ${MAX_FRAME_BYTES} bytes allowed, got ${size} or more`);
  }
}

/**
 * Parse one JSON frame from untrusted input, its size checked first: FrameTooLarge over
 * MAX_FRAME_BYTES, InvalidEnvelope for invalid JSON or an object with a repeated key (which
 * parsers resolve differently, so a signed field could be read two ways).
 * @param {string} text
 * @returns {any} the parsed JSON, untrusted
 */
export function parseFrame(text) {
  if (typeof text !== "string") throw new InvalidEnvelope("frame must be text");
  checkFrameSize(text.length > MAX_FRAME_BYTES ? text.length : utf8Size(text));
  return parseStrictJSON(text);
}

/**
 * Serialise a frame as compact JSON, refusing one too large to send (FrameTooLarge).
 * @param {object} obj
 */
export function encodeFrame(obj) {
  const text = JSON.stringify(obj);
  checkFrameSize(utf8Size(text));
  return text;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
export function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    && !(value instanceof JsonNumber);
}

/**
 * @param {unknown} value
 * @param {number} [limit]
 */
export function short(value, limit = 40) {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= limit ? text : text.slice(0, limit) + "…";
}
