"""The SCTP acknowledgement benchmark still runs (a small bare mesh, one round each way) and
reports each figure beside aiortc's own rule; the SACK counts it prints are the change itself."""

from __future__ import annotations

import re

from bench.sctp_acks import main


def test_sctp_acks_benchmark_prints_each_figure_beside_a_sack_per_packet(
        capsys: object) -> None:
    assert main(["--peers", "3", "--senders", "2", "--messages", "100", "--idle", "5",
                 "--rounds", "1", "--no-write"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "| figure | a SACK per packet (aiortc) | delayed SACKs (the agent) |" in out
    for figure in ("room-wide msgs/s", "CPU µs per delivered message",
                   "datagrams (DTLS records) per delivered message", "idle one-way p50 ms"):
        assert f"| {figure}" in out
    sacks = re.search(r"\| SACK chunks per delivered message \| ([\d.]+) .*?\| ([\d.]+) ", out)
    assert sacks is not None, out
    per_packet, delayed = float(sacks[1]), float(sacks[2])
    assert per_packet >= 0.95, "aiortc acknowledges every packet"
    assert delayed < per_packet * 0.8, "the agent's rule sends fewer"
