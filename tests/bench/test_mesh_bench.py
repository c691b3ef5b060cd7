"""The mesh benchmark still runs end to end (two agents, a handful of messages; figures not
checked), and its profile summary reads py-spy's collapsed stacks as py-spy writes them."""

from pathlib import Path

from bench.mesh import main
from bench.mesh_profile import read_collapsed, summary_table


def test_mesh_benchmark_smoke_prints_figures_beside_the_bare_baseline(capsys: object) -> None:
    assert main(["--smoke", "--no-write"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "| 2 agents | 2 × 5 |" in out
    assert "bare aiortc msgs/s" in out and "agents ÷ bare" in out
    assert "CPU ms per delivered message per agent" in out
    assert "half the load: msgs/s room-wide, paced" in out
    half = out.split("half the load: msgs/s room-wide, paced", 1)[1].splitlines()[2]
    assert half.startswith("| 2 agents | ") and half.endswith(("| met |", "| not met |"))


def test_profile_summary_attributes_samples_to_areas_and_functions(tmp_path: Path) -> None:
    stacks = tmp_path / "agent.txt"
    entry = "_run_module_as_main (<frozen runpy>:198);main (peer_agent/__main__.py:116)"
    stacks.write_text(
        f"{entry};Agent._store (peer_agent/agent.py:505);LocalLog._write (peer_agent/log.py:90) 6\n"
        f"{entry};Agent._on_frame (peer_agent/agent.py:400);"
        "verify_signature (protocol/keys.py:70) 3\n"
        f"{entry};_run_once (asyncio/base_events.py:1922) 1\n"
        f"{entry};_run_once (asyncio/base_events.py:1898);"
        "EpollSelector.select (selectors.py:468) 5\n")
    profile = read_collapsed(stacks)
    assert profile.samples == 10  # the event loop waiting in select is left out
    assert profile.areas["local log: SQLite writes, commits (fsync), reads"] == 6
    assert profile.areas["Ed25519 sign / verify"] == 3
    assert profile.total["Agent._store (peer_agent/agent.py)"] == 6
    table = "\n".join(summary_table(profile, delivered=100, cpu=1.0))
    # 60% of 1 CPU second over 100 messages: 6,000 µs per message
    assert "| local log: SQLite writes, commits (fsync), reads | 60.0% | 6,000 |" in table
    assert "main (peer_agent/__main__.py)" not in table
