"""The browser benchmark still runs end to end in the sealed namespace with Debian's Chromium
(tiny sizes, figures not checked) and its report has every figure beside the plain
RTCDataChannel's."""

from __future__ import annotations

import pytest

from bench.browser import main
from tests.browser.conftest import missing_prerequisite
from tests.helpers import require


def test_browser_benchmark_smoke_reports_every_figure_beside_the_plain_channel(
        capsys: pytest.CaptureFixture[str]) -> None:
    require(missing_prerequisite(), "the browser benchmark needs a sealed network and Chromium")
    assert main(["--smoke", "--no-write"]) == 0
    out = capsys.readouterr().out
    # 1. the floor, 2. the UI echo in a short and a long room, with per-block medians, back
    # to back and spaced, each beside the plain channel measured the same way
    assert "| plain RTCDataChannel, 20 echoes back to back |" in out
    assert "| plain RTCDataChannel, 10 echoes 100 ms apart |" in out
    for size in (3, 30):
        assert f"| Gibberish page, {size} messages, back to back, 10 echoes |" in out
        assert f"| Gibberish page, {size} messages, 100 ms apart, 10 echoes |" in out
        assert f"- {size} messages, 100 ms apart: Chromium " in out
        assert (f"| Gibberish page, {size} messages, 100 ms apart, one way: A's Enter → in "
                "B's list (plain: half its round trip), 10 echoes |") in out
    assert "page ÷ plain (p50 / p99)" in out
    assert "- 30 messages: " in out
    # the same echo with nothing drawn, as a diagnostic
    assert "| the same, 3 messages, nothing drawn (" in out
    assert "a diagnostic, not the product), 100 ms apart, 10 echoes |" in out
    assert "- 3 messages, nothing drawn: Chromium " in out
    # 3. opening a room, from navigation
    for row in ("| DOMContentLoaded |", "| socket joined the room |",
                "| data channel open to the present peer |",
                "| first live message shown (the peer answers the link) |"):
        assert row in out
    # 4. four pages joining at once
    assert "| 4 pages, 1 tries |" in out and "stalls (no mesh in 9 s)" in out
    # where the time goes: the page's own User Timing measures, and the CPU per echo
    assert "| receive: verify (BrowserPeer.verified) |" in out
    assert "| send: sign, journal, hold (BrowserLog.author) |" in out
    assert "| idb: one group commit (readwrite transaction) |" in out
    assert "CPU time per echo" in out and "- 30 messages: Chromium " in out
    assert "Uncaught errors in the pages" not in out
