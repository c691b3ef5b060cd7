// @ts-check
// The protocol's exceptions, one small hierarchy, each with a machine code: the JavaScript twin
// of protocol/errors.py.

/** Untrusted input broke a protocol rule; `code` names the rule (as in protocol/errors.py). */
export class ProtocolError extends Error {
  /**
   * @param {string} message
   * @param {string} [code]
   */
  constructor(message, code = "protocol_error") {
    super(message);
    this.code = code;
  }
}
export class InvalidEnvelope extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "invalid_envelope"); }
}
export class BadSignature extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "bad_signature"); }
}
export class FrameTooLarge extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "too_large"); }
}
export class Conflict extends ProtocolError {
  /** @param {string} message */
  constructor(message) { super(message, "conflict"); }
}
