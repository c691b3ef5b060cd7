"""Link reports (protocol/links.py): what a peer may claim about its own data channels."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import InvalidEnvelope, parse_frame
from protocol.links import (
    MAX_LINKS,
    LinkPath,
    LinkReport,
    LinksFrame,
    is_links_frame,
    parse_links_frame,
    path_kind,
)

DEVICE = "0123456789abcdef0123456789abcdef"


def test_a_report_round_trips_through_its_encoding() -> None:
    frame = LinksFrame((LinkReport(DEVICE, "connected", 0.4), LinkReport(DEVICE, "failed")))
    raw = parse_frame(frame.encode())
    assert is_links_frame(raw)
    assert parse_links_frame(raw) == frame


def test_a_link_goes_the_least_direct_way_of_its_two_candidates() -> None:
    assert path_kind("host", "host") == "host"
    assert path_kind("host", "prflx") == "prflx"
    assert path_kind("srflx", "prflx") == "srflx"
    assert path_kind("relay", "host") == path_kind("srflx", "relay") == "relay"
    with pytest.raises(ValueError, match="candidate type"):
        path_kind("host", "mdns")


def test_a_path_names_both_ends_and_its_kind() -> None:
    path = LinkPath("relay", "relay", "198.51.100.1:49152", "198.51.100.1:49153")
    assert path.to_dict() == {"kind": "relay", "local": "relay", "remote": "relay",
                              "local_address": "198.51.100.1:49152",
                              "remote_address": "198.51.100.1:49153"}


MALFORMED: list[Any] = [
    {"t": "links"},
    {"t": "links", "links": {}},
    {"t": "links", "links": [], "extra": 1},
    {"t": "links", "links": [{"device": DEVICE, "state": "connected"}]},
    {"t": "links", "links": [{"device": "DEVICE", "state": "connected", "rtt_ms": None}]},
    {"t": "links", "links": [{"device": DEVICE, "state": "open", "rtt_ms": None}]},
    {"t": "links", "links": [{"device": DEVICE, "state": "connected", "rtt_ms": -1}]},
    {"t": "links", "links": [{"device": DEVICE, "state": "connected", "rtt_ms": True}]},
    {"t": "links", "links": [{"device": DEVICE, "state": "connected", "rtt_ms": "1"}]},
    {"t": "links", "links": [{"device": DEVICE, "state": "connected", "rtt_ms": 1e9}]},
    {"t": "links", "links": [{"device": DEVICE, "state": "connected", "rtt_ms": None}]
     * (MAX_LINKS + 1)},
    ["links"],
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_a_malformed_report_is_refused_with_the_reason(raw: Any) -> None:
    with pytest.raises(InvalidEnvelope, match="links"):
        parse_links_frame(raw)
