"""Link reports (protocol/links.py): what a peer may claim about its own data channels."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import InvalidEnvelope, parse_frame
from protocol.links import MAX_LINKS, LinkReport, LinksFrame, is_links_frame, parse_links_frame

DEVICE = "0123456789abcdef0123456789abcdef"


def test_a_report_round_trips_through_its_encoding() -> None:
    frame = LinksFrame((LinkReport(DEVICE, "connected", 0.4), LinkReport(DEVICE, "failed")))
    raw = parse_frame(frame.encode())
    assert is_links_frame(raw)
    assert parse_links_frame(raw) == frame


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
