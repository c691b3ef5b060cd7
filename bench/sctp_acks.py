"""SCTP's acknowledgements on the data channels (issue 16): aiortc's SACK for every packet
against the agent's delayed SACKs (peer_agent/sctp_acks.py: one for every second packet, or
after SACK_DELAY, carried by an outgoing DATA packet when one leaves meanwhile), in the bare
mesh of bench.mesh (aiortc data channels between N peers in one process, ICE pinned to
127.0.0.1, no signing, storage or UI), so that nothing but the SCTP layer differs. The two ways
alternate, round after round, in one process.

    .venv/bin/python -m bench.sctp_acks [--peers 4] [--senders 4] [--messages 1000]
                                        [--idle 100] [--rounds 3] [--no-write]

Figures, each way's median over the rounds: room-wide msgs/s; this process's CPU per delivered
message over the load; SACK chunks and datagrams (DTLS records) per delivered message; the idle
one-way time of one message."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcsctptransport import RTCSctpTransport

from bench.mesh_baseline import measure_bare
from bench.report import machine, percentile, write_section
from peer_agent import sctp_acks


@dataclass
class Way:
    """One way of acknowledging, and what each round of it measured."""

    name: str
    delay: float
    rate: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    sacks: list[float] = field(default_factory=list)
    datagrams: list[float] = field(default_factory=list)
    idle_p50: list[float] = field(default_factory=list)


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """Count SACK chunks received and DTLS records sent by every association meanwhile."""
    counts = {"sacks": 0, "datagrams": 0}
    sack, send = RTCSctpTransport._receive_sack_chunk, RTCDtlsTransport._send_data

    async def counted_sack(self: RTCSctpTransport, chunk: Any) -> None:
        counts["sacks"] += 1
        await sack(self, chunk)

    async def counted_send(self: RTCDtlsTransport, data: bytes) -> None:
        counts["datagrams"] += 1
        await send(self, data)

    RTCSctpTransport._receive_sack_chunk = counted_sack  # type: ignore[method-assign]
    RTCDtlsTransport._send_data = counted_send  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        RTCSctpTransport._receive_sack_chunk = sack  # type: ignore[method-assign]
        RTCDtlsTransport._send_data = send  # type: ignore[method-assign]


def run_round(way: Way, peers: int, senders: int, messages: int, idle: int) -> None:
    sctp_acks.install(way.delay)
    try:
        with counting() as counts:
            result = measure_bare(peers, senders, messages, idle)
    finally:
        sctp_acks.install(0)
    delivered = senders * messages * (peers - 1) + idle + 5  # the idle ones and warm-up too
    way.rate.append(result.msgs_per_s)
    way.cpu_us.append(result.cpu / (senders * messages * (peers - 1)) * 1e6)
    way.sacks.append(counts["sacks"] / delivered)
    way.datagrams.append(counts["datagrams"] / delivered)
    way.idle_p50.append(percentile(result.one_way, 50) * 1000)


def report(ways: list[Way], args: argparse.Namespace) -> str:
    base, new = ways
    med: Callable[[list[float]], float] = statistics.median
    rows = [
        ("room-wide msgs/s", "{:,.0f}", base.rate, new.rate),
        ("CPU µs per delivered message (this process, every peer)", "{:.0f}",
         base.cpu_us, new.cpu_us),
        ("SACK chunks per delivered message", "{:.2f}", base.sacks, new.sacks),
        ("datagrams (DTLS records) per delivered message", "{:.2f}",
         base.datagrams, new.datagrams),
        ("idle one-way p50 ms", "{:.2f}", base.idle_p50, new.idle_p50),
    ]
    lines = [
        "## SCTP acknowledgements: a SACK per packet against delayed SACKs (issue 16)",
        "",
        f"`python -m bench.sctp_acks --peers {args.peers} --senders {args.senders} --messages "
        f"{args.messages} --idle {args.idle} --rounds {args.rounds}`: the bare mesh of "
        f"bench.mesh ({args.peers} peers in one process, aiortc data channels over loopback, "
        f"ICE pinned to 127.0.0.1, no signing, storage or UI); {args.senders} senders "
        f"broadcast {args.messages} messages each, at most 16 ahead of their slowest receiver. "
        "The baseline is aiortc's own rule, a SACK for every packet that carries data, sent "
        "at once; the agent's (`peer_agent/sctp_acks.py`) sends one for every second packet, "
        f"or {sctp_acks.SACK_DELAY * 1000:.0f} ms after a lone one, and at once on a gap or "
        "a duplicate, in the packet of a message leaving meanwhile when there is one. The two "
        f"alternate, {args.rounds} rounds; medians of the rounds, each round's figure in "
        "brackets. "
        f"{machine('aiortc')}; 1-minute load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        f"| figure | {base.name} | {new.name} | new ÷ baseline |",
        "|---|---|---|---|",
    ]
    for label, form, before, after in rows:
        ratio = med(after) / med(before) if med(before) else float("nan")
        lines.append(
            f"| {label} | {form.format(med(before))} "
            f"({', '.join(form.format(v) for v in before)}) | {form.format(med(after))} "
            f"({', '.join(form.format(v) for v in after)}) | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sctp_acks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--messages", type=int, default=1000, help="per sender")
    parser.add_argument("--idle", type=int, default=100, help="idle one-way samples")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.peers < 2 or not 1 <= args.senders <= args.peers:
        parser.error("needs 2 peers or more, and no more senders than peers")
    ways = [Way("a SACK per packet (aiortc)", 0.0),
            Way("delayed SACKs (the agent)", sctp_acks.SACK_DELAY)]
    for round_ in range(args.rounds):
        for way in ways if round_ % 2 == 0 else reversed(ways):
            run_round(way, args.peers, args.senders, args.messages, args.idle)
            print(f"-- round {round_ + 1}, {way.name}: {way.rate[-1]:,.0f} msgs/s, "
                  f"{way.cpu_us[-1]:.0f} µs CPU per message, {way.sacks[-1]:.2f} SACKs "
                  "per message", flush=True)
    text = report(ways, args)
    print(text)
    if not args.no_write:
        print(f"written to {write_section('sctp-acks', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
