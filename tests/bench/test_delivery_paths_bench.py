"""The delivery-paths benchmark still runs end to end (two samples a path; figures not
checked). It needs the routed network of the fault tests: root and iptables."""

import pytest

from bench.delivery_paths import main
from tests.faults.routed_network import unavailable_reason
from tests.helpers import require


def test_delivery_paths_benchmark_runs_and_prints_every_way(capsys: pytest.CaptureFixture[str],
                                                            ) -> None:
    reason = unavailable_reason()
    require(reason, "needs a routed network of namespaces")
    assert main(["--messages", "2", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| bob → carol, no peer between them, server up | via the server ×2 |" in out
    assert "| bob → carol, alice linked to both, server down | via alice ×2 |" in out
    assert out.count("direct (live) ×2") == 2
