"""bench.catchup runs end to end on a small room: a new device takes it from the server, a
restarted one the part it missed from its peer with the server killed, and the report puts
each beside the floors measured in the same run."""

from __future__ import annotations

import pytest

from bench import catchup


def test_catchup_benchmark_runs_both_ways_and_prints_them_beside_the_floors(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert catchup.main(["--messages", "400", "--uploaders", "2", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| new device, from the server | " in out
    assert "| restarted device, from the peers (server down) | " in out
    assert "Rows read straight from SQLite" in out
    assert "Ed25519 verification alone" in out
    # The CPU each process used during each catch-up, the server's only while it runs.
    assert "CPU used while catching up from the server: the agent catching up " in out
    server_line = next(line for line in out.splitlines()
                       if line.startswith("CPU used while catching up from the server"))
    assert "the server " in server_line
    peers_line = next(line for line in out.splitlines()
                      if line.startswith("CPU used while catching up from the peers"))
    assert "the agent sending " in peers_line and "the server" not in peers_line
