"""The server benchmarks still run end to end on both databases (tiny sizes; the figures are
not checked, only that each prints its rows next to its baseline)."""

from __future__ import annotations

import pytest

from bench import connections, history, ingest
from tests.signaling.services import require_postgres, require_redis


@pytest.fixture(autouse=True)
def services() -> None:
    require_postgres()
    require_redis()


def test_ingest_benchmark_runs_on_both_databases(capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest.main(["--envelopes", "400", "--uploaders", "2", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| SQLite" in out and "| PostgreSQL" in out and "plain SQLAlchemy" in out


def test_history_benchmark_runs_on_both_databases(capsys: pytest.CaptureFixture[str]) -> None:
    # Three pages of 100: the first, the middle and the last are each a page of their own.
    assert history.main(["--messages", "300", "--requests", "2", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert out.count("| SQLite") == 3 and out.count("| PostgreSQL") == 3
    assert "OFFSET" in out


def test_connections_benchmark_runs_on_one_and_two_processes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two rooms, so that the joins go round them; a short idle, still measured.
    assert connections.main(["--clients", "8", "--room-size", "4", "--joins", "2",
                             "--idle-seconds", "0.2", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| one process |" in out and "| two processes, Redis queue |" in out
