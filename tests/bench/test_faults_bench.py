"""The recovery benchmark still runs end to end (tiny sizes, one trial; figures not checked)."""

import pytest

from bench.faults import main


# Four server and agent restarts in a row: about 40 s alone, past 120 s when the whole suite
# shares two cores with it.
@pytest.mark.timeout(300)
def test_faults_benchmark_runs_and_prints_every_recovery(capsys: object) -> None:
    # The agents retry the server every second at most: the smoke run waits for no back-off.
    assert main(["--history", "10", "--missed", "5", "--trials", "1", "--reconnect-max", "1",
                 "--no-write"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "server restart → converged log" in out
    assert "caught up, server up" in out and "caught up, server down" in out
