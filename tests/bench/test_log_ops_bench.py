"""bench.log_ops times each operation of the local log in a short and a long room, side by
side, and says which grow with the room."""

from __future__ import annotations

import pytest

from bench import log_ops


def test_log_ops_benchmark_prints_each_operation_in_both_rooms(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert log_ops.main(["--messages", "2000", "--small", "50", "--repeat", "3",
                         "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| 50 messages, µs | 2,000 messages, µs |" in out
    assert "| the next upload batch (`outbox_pending`) |" in out
    assert "| mark the room read (`mark_read`) |" in out
    # Each row carries both figures, their ratio and a verdict.
    rows = [line for line in out.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 14
    assert all(line.rstrip().endswith(("| flat |", "| grows with the room |")) for line in rows)
