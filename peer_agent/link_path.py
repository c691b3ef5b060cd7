"""Which way an aiortc peer connection goes: the candidate pair its ICE agent nominated.

aiortc 1.16's `RTCPeerConnection.getStats()` reports only RTP senders and receivers, never a
candidate pair, so the pair is read from the aioice `Connection` behind the data channel's
transports (`RTCIceTransport._connection`, whose `_nominated` maps each component to the pair in
use). Those are private names of aiortc 1.16 / aioice 0.13: this module is the one place that
touches them, and it answers None rather than fail if they move."""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection

from protocol.links import CANDIDATE_TYPES, LinkPath

log = logging.getLogger(__name__)


def selected_path(pc: RTCPeerConnection | None) -> LinkPath | None:
    """The nominated candidate pair of `pc`'s data-channel transport, or None while there is
    none (not connected yet, closed, or an aiortc whose internals differ)."""
    if pc is None or pc.sctp is None:
        return None
    try:
        connection = pc.sctp.transport.transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            return None
        local, remote = pair.local_candidate, pair.remote_candidate
        if local.type not in CANDIDATE_TYPES or remote.type not in CANDIDATE_TYPES:
            return None
        return LinkPath(local.type, remote.type, f"{local.host}:{local.port}",
                        f"{remote.host}:{remote.port}")
    except AttributeError as exc:
        log.debug("no candidate pair to read: %r", exc)
        return None
