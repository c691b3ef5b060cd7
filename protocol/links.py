"""Link reports: a peer tells the peers it is linked to which data channels it has, so that
each one's network view can draw the whole room, not only its own links (docs/network-view.md).

    {"t": "links", "links": [{"device": "<id>", "state": "connected", "rtt_ms": 0.4}, …]}

A report is ephemeral (never logged or passed on) and only a peer's claim about itself: it is
shown as such and trusted for nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .envelope import DEVICE_ID
from .errors import InvalidEnvelope
from .frames import encode_frame

LINK_STATES = ("connecting", "connected", "disconnected", "failed", "closed")
CANDIDATE_TYPES = ("host", "prflx", "srflx", "relay")
"""ICE candidate types from the most direct to the least (RFC 8445 section 5.1.1): a host
address, one learned from a peer's checks, one a STUN or TURN server saw, a TURN relay."""
MAX_LINKS = 64
"""At most this many links in one report (a room's mesh is far smaller)."""
MAX_RTT_MS = 600_000.0

_LINK_FIELDS = frozenset({"device", "state", "rtt_ms"})


def path_kind(local_type: str, remote_type: str) -> str:
    """Which way a link goes, from the candidate types of its selected ICE pair: the less
    direct of the two ends ("relay" if either is a TURN relay, then "srflx", "prflx", "host").
    Raises ValueError for a type ICE does not define."""
    for kind in (local_type, remote_type):
        if kind not in CANDIDATE_TYPES:
            raise ValueError(f"unknown ICE candidate type {kind[:20]!r}")
    return max(local_type, remote_type, key=CANDIDATE_TYPES.index)


@dataclass(frozen=True, slots=True)
class LinkPath:
    """The selected ICE candidate pair of a link: each end's candidate type and address."""

    local_type: str
    remote_type: str
    local_address: str
    remote_address: str

    @property
    def kind(self) -> str:
        return path_kind(self.local_type, self.remote_type)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "local": self.local_type, "remote": self.remote_type,
                "local_address": self.local_address, "remote_address": self.remote_address}


@dataclass(frozen=True, slots=True)
class LinkReport:
    """One data channel of the reporting peer: to `device`, in `state`, with its last RTT."""

    device: str
    state: str
    rtt_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "state": self.state, "rtt_ms": self.rtt_ms}


@dataclass(frozen=True, slots=True)
class LinksFrame:
    """A peer's report of its own data channels."""

    t: ClassVar[str] = "links"

    links: tuple[LinkReport, ...]

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> LinksFrame:
        """The report from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        return parse_links_frame(obj)

    def encode(self) -> str:
        return encode_frame({"t": "links", "links": [link.to_dict() for link in self.links]})


def is_links_frame(obj: object) -> bool:
    """Tell whether a parsed frame claims to be a link report (its "t" is "links")."""
    return isinstance(obj, dict) and obj.get("t") == "links"


def parse_links_frame(obj: object) -> LinksFrame:
    """Validate a link report already parsed with `parse_frame`; raises InvalidEnvelope
    (a ProtocolError) naming what is wrong."""
    if not isinstance(obj, dict) or obj.keys() != {"t", "links"} or obj["t"] != "links":
        raise InvalidEnvelope('a links frame is {"t": "links", "links": [...]}')
    links = obj["links"]
    if not isinstance(links, list):
        raise InvalidEnvelope("links frame: links must be a list")
    if len(links) > MAX_LINKS:
        raise InvalidEnvelope(f"links frame: more than {MAX_LINKS} links")
    parsed = []
    for i, link in enumerate(links):
        if not isinstance(link, dict) or link.keys() != _LINK_FIELDS:
            raise InvalidEnvelope(f"links frame: link {i} must have exactly device, state, "
                                  "rtt_ms")
        device, state, rtt = link["device"], link["state"], link["rtt_ms"]
        if type(device) is not str or not DEVICE_ID.fullmatch(device):
            raise InvalidEnvelope(f"links frame: link {i} has an invalid device id")
        if state not in LINK_STATES:
            raise InvalidEnvelope(f"links frame: link {i} has an unknown state")
        if rtt is not None and (type(rtt) not in (int, float) or not math.isfinite(rtt)
                                or not 0 <= rtt <= MAX_RTT_MS):
            raise InvalidEnvelope(f"links frame: link {i} has an invalid rtt_ms")
        parsed.append(LinkReport(device, state, None if rtt is None else float(rtt)))
    return LinksFrame(tuple(parsed))
