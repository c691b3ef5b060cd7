"""The latency benchmark still runs end to end (a handful of messages; figures not checked)."""

from bench.latency import main


def test_latency_benchmark_runs_and_prints_both_paths(capsys: object) -> None:
    assert main(["--messages", "5", "--no-write"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "agent → agent" in out and "relayed by the server" in out

