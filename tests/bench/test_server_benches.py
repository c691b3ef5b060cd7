"""The server benchmarks still run end to end on both databases (tiny sizes; the figures are
not checked, only that each prints its rows next to its baseline).

The three share their server processes (`SharedDeployments`): a deployment takes seconds to
start, and a smoke run needs no fresh database to show that the benchmark works."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import connections, history, ingest
from bench.databases import FreshDeployments
from tests.signaling.deployment import Deployment
from tests.signaling.services import require_postgres, require_redis

CLIENTS = 8  # the connections smoke run's clients


class SharedDeployments:
    """A `Deployer` that keeps what it deploys until `close()`: one deployment per backend and
    Redis URL, made at the first request, all with `env`. A request for a variable that `env`
    sets to another value is refused (its layout would not be the one asked for). A deployment
    with Redis gets `processes_with_redis` processes, so that the one- and two-process layouts
    share it: a request for fewer sees the first ones."""

    def __init__(self, workdir: Path, env: dict[str, str], processes_with_redis: int = 2) -> None:
        self.env, self.processes_with_redis = env, processes_with_redis
        self._fresh = FreshDeployments(workdir)
        self._held: dict[tuple[str, str | None], Deployment] = {}
        self._stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def __call__(self, backend: str, count: int = 1, redis_url: str | None = None,
                 env: dict[str, str] | None = None) -> Iterator[Deployment]:
        differs = sorted(k for k, v in (env or {}).items() if self.env.get(k) != v)
        assert not differs, f"the shared deployments set {differs} otherwise"
        key = (backend, redis_url)
        if key not in self._held:
            width = max(count, self.processes_with_redis) if redis_url else count
            self._held[key] = self._stack.enter_context(
                self._fresh(backend, width, redis_url, self.env))
        held = self._held[key]
        assert count <= len(held.processes), f"{count} processes asked, {key} has fewer"
        yield dataclasses.replace(held, processes=held.processes[:count])

    def close(self) -> None:
        """Stop every process and drop every database, the last made first."""
        self._stack.close()


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedDeployments]:
    require_postgres()
    require_redis()
    shared = SharedDeployments(tmp_path_factory.mktemp("deployments"),
                               {**ingest.SERVER_ENV, **connections.server_env(CLIENTS)})
    try:
        yield shared
    finally:
        shared.close()


def test_ingest_benchmark_runs_on_both_databases(
    deployments: SharedDeployments, capsys: pytest.CaptureFixture[str],
) -> None:
    assert ingest.main(["--envelopes", "400", "--uploaders", "2", "--live-envelopes", "60",
                        "--no-write"],
                       deployments) == 0
    out = capsys.readouterr().out
    assert "| SQLite" in out and "| PostgreSQL" in out and "plain SQLAlchemy" in out
    # The live-sized pass (3 envelopes per upload) has a row on each database.
    assert sum(" | 3 | " in line for line in out.splitlines()) == 2


def test_history_benchmark_runs_on_both_databases(
    deployments: SharedDeployments, capsys: pytest.CaptureFixture[str],
) -> None:
    # Three pages of 100: the first, the middle and the last are each a page of their own.
    assert history.main(["--messages", "300", "--requests", "2", "--no-write"],
                        deployments) == 0
    out = capsys.readouterr().out
    assert out.count("| SQLite") == 3 and out.count("| PostgreSQL") == 3
    assert "OFFSET" in out


def test_connections_benchmark_runs_on_one_and_two_processes(
    deployments: SharedDeployments, capsys: pytest.CaptureFixture[str],
) -> None:
    # Two rooms, so that the joins go round them; a short idle, still measured.
    assert connections.main(["--clients", str(CLIENTS), "--room-size", "4", "--joins", "2",
                             "--idle-seconds", "0.2", "--no-write"], deployments) == 0
    out = capsys.readouterr().out
    assert "| one process |" in out and "| two processes, Redis queue |" in out
