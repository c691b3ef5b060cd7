"""Where an idle message's time goes, step by step (`python -m bench.mesh --trace`): the agents
run with GIBBERISH_TRACE_DIR set (peer_agent/trace.py) and write each message's steps with the
machine's monotonic clock, which the bench's own post and showing times share."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from bench.mesh_room import Watch
from bench.report import percentile

# (from, to, what happens in between); "posted" and "shown" are the bench's own readings.
SENDER_STEPS = [
    ("posted", "http_in", "HTTP request into the sender's handler"),
    ("http_in", "committed", "sign + SQLite commit (no fsync)"),
    ("committed", "fsync_asked", "to the group-commit task"),
    ("fsync_asked", "fsync_start", "hop into the fsync thread"),
    ("fsync_start", "fsync_end", "fsync of the WAL"),
    ("fsync_end", "durable", "hop back to the event loop"),
    ("durable", "sent", "onto the data channels (Mesh.broadcast)"),
]
RECEIVER_STEPS = [
    ("sent", "udp_out", "sender: SCTP, DTLS, first datagram out"),
    ("udp_out", "udp_in", "UDP to the receiver's aioice (its wake-up)"),
    ("udp_in", "frame_in", "receiver: DTLS, SCTP, data channel callback"),
    ("frame_in", "parsed", "frame parsed"),
    ("parsed", "verified", "room core: verified"),
    ("verified", "stored", "stored (add_many, NORMAL commit)"),
    ("stored", "ui_queued", "receipt queued, path recorded, event built"),
    ("ui_queued", "ui_flush", "wait for the UI flush"),
    ("ui_flush", "ui_written", "WebSocket frame written"),
    ("ui_written", "shown", "to the bench's WebSocket reader"),
]


def read_marks(trace_dir: Path, pid: int) -> dict[str, dict[str, float]]:
    """One agent's marks: message id → step → seconds (the first mark of each step)."""
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    path = trace_dir / f"trace-{pid}.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            message_id, step, at = line.split("\t")
            marks[message_id].setdefault(step, float(at))
    return marks


def step_table(trace_dir: Path, pids: list[int], watch: Watch, texts: list[str]) -> list[str]:
    """Markdown rows: median and p90 ms of each step over the idle messages `texts`."""
    marks = [read_marks(trace_dir, pid) for pid in pids]
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    totals: list[float] = []
    for text in texts:
        author, posted = watch.posted[text]
        message_id = watch.ids[text]
        sender = {**marks[author].get(message_id, {}), "posted": posted}
        for a, b, _ in SENDER_STEPS:
            if a in sender and b in sender:
                samples[a, b].append(sender[b] - sender[a])
        for agent, shown in watch.shown[text].items():
            if agent == author:
                continue
            got = {**marks[agent].get(message_id, {}), "shown": shown,
                   "sent": sender.get("sent", 0.0), "udp_out": sender.get("udp_out", 0.0)}
            for a, b, _ in RECEIVER_STEPS:
                if a in got and b in got and got[a]:
                    samples[a, b].append(got[b] - got[a])
            totals.append(shown - posted)
    rows = ["| step | median ms | p90 ms | mean ms | samples |", "|---|---:|---:|---:|---:|"]
    median_sum = mean_sum = 0.0
    for a, b, what in SENDER_STEPS + RECEIVER_STEPS:
        values = samples.get((a, b), [])
        if values:
            median_sum += percentile(values, 50) * 1000
            mean_sum += sum(values) / len(values) * 1000
            rows.append(f"| {what} (`{a}` → `{b}`) | {percentile(values, 50) * 1000:.3f} | "
                        f"{percentile(values, 90) * 1000:.3f} | "
                        f"{sum(values) / len(values) * 1000:.3f} | {len(values)} |")
    if totals:
        rows.append(f"| sum of the steps | {median_sum:.3f} | | {mean_sum:.3f} | |")
        rows.append(f"| one-way, post → shown | {percentile(totals, 50) * 1000:.3f} | "
                    f"{percentile(totals, 90) * 1000:.3f} | "
                    f"{sum(totals) / len(totals) * 1000:.3f} | {len(totals)} |")
    return rows


def trace_env(trace_dir: Path) -> None:
    """Have the agents started from now on write their marks into `trace_dir`."""
    trace_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GIBBERISH_TRACE_DIR"] = str(trace_dir)
