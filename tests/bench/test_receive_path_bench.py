"""The receive-path benchmark still runs (a handful of calls; figures not checked) and prints
each row beside its baseline."""

from bench.receive_path import main


def test_receive_path_benchmark_prints_each_row_beside_its_baseline(capsys: object) -> None:
    assert main(["--calls", "5", "--no-write"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "| a received envelope stored (one commit): NORMAL vs FULL |" in out
    assert "taken as held vs verified again" in out and "ratio (median)" in out
