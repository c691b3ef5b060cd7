"""The one place that restricts ICE to given local addresses (tests pin it to 127.0.0.1).

Why this exists (aioice 0.13.0, as used by aiortc 1.16.0):

- `aioice.ice.Connection.gather_candidates` asks the module-level function
  `aioice.ice.get_host_addresses(use_ipv4=..., use_ipv6=...)` which addresses to bind host
  candidates to, and that function deliberately leaves out 127.0.0.1 and ::1. On a machine whose
  only interface is `lo` an aiortc peer then offers no candidate and never connects; elsewhere it
  offers the machine's real addresses, which tests must not use. Nothing else in aioice or aiortc
  imports that function by name, so replacing the module attribute changes every gathering.
- Every remote candidate, whether it comes from a remote SDP (aiortc's `add_remote_candidates`)
  or is trickled (`RTCPeerConnection.addIceCandidate`), reaches aioice through
  `RTCIceTransport.addRemoteCandidate`, which calls `aioice.ice.Connection.add_remote_candidate`.
  Wrapping that one method filters both paths before aioice pairs the candidate or, for a
  browser's `.local` mDNS name, sends a multicast query to resolve it.

Peer-reflexive candidates are learned from checks that arrive on our own sockets, which are bound
to the pinned addresses, so they cannot come from elsewhere. STUN and TURN servers lie outside the
pin: the mesh (`peer_agent.negotiation`) uses none while ICE is pinned.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Final

import aioice.ice
from aioice import Candidate

log = logging.getLogger(__name__)

# aioice 0.13.0 looks `get_host_addresses` up in its module at each gathering (ice.py,
# Connection.gather_candidates), and that function skips 127.0.0.1 and ::1 on purpose.
_original_get_host_addresses: Final = aioice.ice.get_host_addresses
_original_add_remote_candidate: Final = aioice.ice.Connection.add_remote_candidate
_pinned: tuple[str, ...] | None = None


def pin_ice_hosts(addresses: list[str] | None) -> None:
    """Gather host candidates on exactly `addresses` and ignore remote candidates elsewhere.

    `None` restores aioice's own behaviour (every non-loopback interface, any remote candidate).
    Calling it again replaces the previous pin; it affects every connection gathered afterwards
    in this process. Raises ValueError for a string that is not an IP address.
    """
    global _pinned
    if addresses is None:
        _pinned = None
        aioice.ice.get_host_addresses = _original_get_host_addresses
        aioice.ice.Connection.add_remote_candidate = _original_add_remote_candidate  # type: ignore[method-assign]
        return
    _pinned = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    aioice.ice.get_host_addresses = _pinned_host_addresses
    aioice.ice.Connection.add_remote_candidate = _add_pinned_remote_candidate  # type: ignore[method-assign]


def pinned_ice_hosts() -> list[str] | None:
    """The addresses ICE is pinned to, or None when aioice chooses for itself."""
    return None if _pinned is None else list(_pinned)


def ice_host_allowed(address: str) -> bool:
    """Whether a candidate at `address` may be used under the current pin (always, if unpinned)."""
    return _pinned is None or _normalised(address) in _pinned


def _pinned_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _pinned or ()
    return [
        a for a in hosts
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]


async def _add_pinned_remote_candidate(
    self: aioice.ice.Connection, remote_candidate: Candidate | None
) -> None:
    # None means end-of-candidates and always passes.
    if remote_candidate is not None and not ice_host_allowed(remote_candidate.host):
        log.info("ignoring remote ICE candidate %s: ICE is pinned to %s",
                 remote_candidate.host, ", ".join(_pinned or ()))
        return
    await _original_add_remote_candidate(self, remote_candidate)


def _normalised(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address  # a hostname (mDNS ".local" name): never in the pinned list
