"""bench.verify runs and prints each way of checking signatures beside the single-thread
baseline measured in the same run."""

from __future__ import annotations

import pytest

from bench import verify


def test_verify_benchmark_prints_every_way_beside_the_baseline(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert verify.main(["--messages", "200", "--batch", "100", "--rounds", "1",
                        "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| baseline: `cryptography`, one thread, one by one | " in out
    assert "`verify_envelopes` (libsodium)" in out
    assert "in 2 processes" in out or "processes, by batch" in out
