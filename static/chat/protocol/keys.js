// @ts-check
// Device keys (Ed25519), their ids, signatures and the base64url text form of keys and
// signatures: the JavaScript twin of protocol/keys.py. WebCrypto does the hashing and Ed25519.

import { BadSignature, ProtocolError } from "./errors.js";

export const SIGNATURE_BYTES = 64;
export const KEY_BYTES = 32;

/**
 * This device's key: the private half for signing, the public one and its device id.
 * @typedef {{privateKey: CryptoKey, publicKey: string, device: string}} DeviceKey
 */

const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Unpadded base64url, the one text form of keys and signatures on the wire.
 * @param {Uint8Array} bytes
 */
export function b64encode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Decode canonical base64url (padding optional); throws ProtocolError on anything else.
 * @param {unknown} text
 */
export function b64decode(text) {
  if (typeof text !== "string" || !B64URL.test(text)) {
    throw new ProtocolError("not base64url: only A-Z, a-z, 0-9, '-' and '_' are allowed");
  }
  const body = text.replace(/=+$/, "");
  if (body.length % 4 === 1) throw new ProtocolError("not base64url: impossible length");
  const padded = body + "=".repeat((4 - (body.length % 4)) % 4);
  if (text !== body && text !== padded) throw new ProtocolError("not base64url: wrong padding");
  const binary = atob(padded.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  if (b64encode(bytes) !== body) {
    throw new ProtocolError("not base64url: non-canonical trailing bits");
  }
  return bytes;
}

/**
 * @param {Uint8Array} bytes
 */
function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The device id of a raw Ed25519 public key: the first 32 hex digits of its SHA-256.
 * @param {Uint8Array<ArrayBuffer>} publicRaw
 */
export async function deviceIdFor(publicRaw) {
  if (publicRaw.length !== KEY_BYTES) {
    throw new ProtocolError(`an Ed25519 public key has ${KEY_BYTES} bytes, got ${publicRaw.length}`);
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicRaw));
  return hex(digest).slice(0, 32);
}

/**
 * Whether a base64url public key is the key of `device` (ids name exactly one key).
 * @param {unknown} publicKeyB64
 * @param {unknown} device
 */
export async function keyMatchesDevice(publicKeyB64, device) {
  try {
    return (await deviceIdFor(b64decode(publicKeyB64))) === device;
  } catch {
    return false;
  }
}

const importedKeys = new Map();

/**
 * Import a base64url Ed25519 public key for verifying (cached); ProtocolError if malformed.
 * @param {string} publicKeyB64
 * @returns {Promise<CryptoKey>}
 */
export async function importPublicKey(publicKeyB64) {
  let key = importedKeys.get(publicKeyB64);
  if (key) return key;
  const raw = b64decode(publicKeyB64);
  if (raw.length !== KEY_BYTES) {
    throw new ProtocolError(`public key is malformed: an Ed25519 key has ${KEY_BYTES} bytes`);
  }
  try {
    key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, true, ["verify"]);
  } catch (err) {
    throw new ProtocolError(`public key is malformed: ${err.message}`);
  }
  if (importedKeys.size > 10000) importedKeys.clear();
  importedKeys.set(publicKeyB64, key);
  return key;
}

/**
 * @param {CryptoKey} privateKey
 * @param {BufferSource} bytes
 */
export async function sign(privateKey, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, privateKey, bytes));
}

/**
 * Throw BadSignature unless `signature` is the key's signature of `bytes`.
 * @param {string} publicKeyB64
 * @param {Uint8Array<ArrayBuffer>} signature
 * @param {BufferSource} bytes
 */
export async function verifySignature(publicKeyB64, signature, bytes) {
  let key;
  try {
    key = await importPublicKey(publicKeyB64);
  } catch (err) {
    throw new BadSignature(`cannot check the signature: ${err.message}`);
  }
  if (signature.length !== SIGNATURE_BYTES) {
    throw new BadSignature(`a signature has ${SIGNATURE_BYTES} bytes, got ${signature.length}`);
  }
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, signature, bytes);
  if (!ok) throw new BadSignature("the signature does not match the signed data and key");
}
