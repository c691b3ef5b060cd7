"""The browser log benchmark still runs end to end in the sealed namespace with Debian's
Chromium (tiny sizes, figures not checked), and reports each room's figures beside the room
read whole."""

from __future__ import annotations

import pytest

from bench.browser_log import main
from tests.browser.conftest import missing_prerequisite
from tests.helpers import require


def test_browser_log_benchmark_smoke_reports_every_figure(
        capsys: pytest.CaptureFixture[str]) -> None:
    require(missing_prerequisite(), "the browser log benchmark needs a sealed network and Chromium")
    assert main(["--smoke", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| room: step | ms | baseline ms | ÷ baseline |" in out
    for size in ("20", "500"):
        assert f"| {size}: open the log (BrowserLog.load: newest " in out
        assert f"| {size}: a peer's pull ({size} messages it lacks) |" in out
        assert f"| {size}: the page showing the room, ready from navigation" in out
    assert "| 500: an older page (50 before the window, from IndexedDB) |" in out
    assert "page error" not in out
