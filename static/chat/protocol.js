// @ts-check
// The Gibberish protocol in browser JavaScript: a port of the Python package `protocol/`
// (see docs/protocol.md), one module under protocol/ per Python twin. Pure code: no sockets,
// no storage, no clock; WebCrypto does the hashing and Ed25519. tests/browser checks this port
// against tests/protocol/vectors.json.
//
// This module holds nothing of its own: it re-exports every module of the port, as the
// package's __init__.py does, for whoever wants the whole protocol under one name.

export * from "./protocol/limits.js";
export * from "./protocol/errors.js";
export * from "./protocol/canonical.js";
export * from "./protocol/keys.js";
export * from "./protocol/names.js";
export * from "./protocol/strict-json.js";
export * from "./protocol/envelope.js";
export * from "./protocol/vector.js";
export * from "./protocol/sync.js";
export * from "./protocol/catchup.js";
export * from "./protocol/links.js";
export * from "./protocol/channel.js";
export * from "./protocol/fingerprint.js";
export * from "./protocol/paging.js";
