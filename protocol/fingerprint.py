"""The DTLS fingerprint an offer or answer commits to, and the bytes a device signs to vouch for
it (`fp_sig`), so that a signaling path that alters the SDP breaks the connection instead of
taking it over (docs/protocol.md, "Signaling")."""

from __future__ import annotations

from .canonical import FINGERPRINT_DOMAIN, canonical_bytes
from .errors import InvalidEnvelope


def sdp_fingerprint(sdp: str) -> str:
    """Return the DTLS fingerprint an SDP commits to, as signed in `fp_sig`.

    That is the text after `a=fingerprint:` (e.g. "sha-256 AB:CD:…") with surrounding whitespace
    removed, taken from every such line at session or media level; several distinct values are
    sorted and joined with ",". Every line counts so that no fingerprint DTLS could accept is
    left unsigned. Raises InvalidEnvelope when the SDP has none.
    """
    values = {
        line.strip()[len("a=fingerprint:"):].strip()
        for line in sdp.splitlines()
        if line.strip().startswith("a=fingerprint:")
    }
    values.discard("")
    if not values:
        raise InvalidEnvelope("the SDP has no a=fingerprint line")
    return ",".join(sorted(values))


def fingerprint_signed_bytes(room: str, sender: str, receiver: str, fingerprint: str) -> bytes:
    """The bytes a device signs to vouch for the DTLS fingerprint it sends to `receiver`."""
    return canonical_bytes(FINGERPRINT_DOMAIN, [room, sender, receiver, fingerprint])
