"""Catch-up (issue 16): how fast a device comes to hold a long room, from the server and from
its peers with the server down, beside the floors measured in the same run.

    .venv/bin/python -m bench.catchup [--messages 100000] [--uploaders 4] [--no-write]

1. The room: `--messages` signed envelopes published to the server (Socket.IO `publish`,
   batches of 100, as bench.ingest does) by `--uploaders` devices.
2. **From the server**: a new user's agent joins the room with an empty data dir; the time is
   from its UI answering (the agent is up and signed in) to its log holding every message,
   read from its SQLite log by another process (`SELECT count(*)`), so "holds" means
   committed. Its peer is not linked yet: nothing but the server has the room.
3. **From the peers**: a second agent holds the room, is stopped, and misses `--messages` more
   (published while it is down; the first agent takes them live). The server is then killed
   and the second agent restarted: the time is from its UI answering to its log holding all
   2 × `--messages`, brought by the first agent over their data channel (rendezvous without the
   server, then anti-entropy).
Floors, same run: the same rows read straight from the server's SQLite file, and the Ed25519
verifications alone (every envelope is verified by the agent): one by one through
`cryptography` on one core (how agents checked them before), and by batches of 500 through
`verify_envelopes` with a thread per core (how they check them now). And the CPU each process
used during each catch-up (user + system): spread over every core with nothing waiting, it
takes no less wall time than that sum over the cores, a floor of its own.

With `--profile DIR`, py-spy samples each catching-up agent (bench/mesh_profile.py) and the
report adds where its time went."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from bench.ingest import SERVER_ENV as INGEST_ENV
from bench.ingest import signed, upload
from bench.mesh_profile import Sampler, read_collapsed, summary_table
from bench.report import machine, write_section
from launcher import AgentProcess, ServerProcess, stop_all
from launcher.agent import LOOPBACK_RECONNECT_MAX
from launcher.server import OPEN_LIMITS
from peer_agent.device import LOG_FILE
from protocol import MAX_BATCH, Envelope, verify_envelopes
from protocol.keys import b64decode, load_public_key
from tests.signaling.conftest import Account, register_account

SERVER_ENV = {**OPEN_LIMITS, **INGEST_ENV, "RATELIMIT_SIGNAL": "1000000 per 10 seconds"}
PASSWORD = "password-" + "c" * 8
GOAL_SERVER_S, GOAL_PEERS_S = 5.0, 10.0


def held(agent: AgentProcess, room: str) -> int:
    """Messages of `room` committed to the agent's log (read by another connection)."""
    path = agent.data_dir / LOG_FILE
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM messages WHERE room = ?",
                                  (room,)).fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not made yet
        return 0


def time_to_hold(agent: AgentProcess, room: str, count: int, timeout: float) -> float:
    """Seconds from now until the agent's log holds `count` messages of `room`."""
    started = time.monotonic()
    while held(agent, room) < count:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{agent.name} holds {held(agent, room)} of {count} after "
                               f"{timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def publish(server: ServerProcess, accounts: list[Account], room: str, first: int,
            per_account: int) -> None:
    """Each account publishes `per_account` envelopes, seqs from `first`."""
    own = [signed(a, room, per_account, first=first) for a in accounts]
    batches = [[e[i:i + MAX_BATCH] for i in range(0, len(e), MAX_BATCH)] for e in own]
    _, acked = asyncio.run(upload(server.url, accounts, room, batches))
    assert acked == per_account * len(accounts), acked


def read_floor(server: ServerProcess, room: str) -> tuple[float, int]:
    """Seconds to read every row of `room` straight from the server's SQLite file."""
    path = server.database_url.removeprefix("sqlite:///")
    started = time.perf_counter()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT m.* FROM messages m JOIN rooms r ON r.id = m.room_id "
                          "WHERE r.name = ? ORDER BY m.cursor", (room,)).fetchall()
    return time.perf_counter() - started, len(rows)


def verify_floors(account: Account, room: str, count: int) -> tuple[float, float]:
    """Seconds for `count` Ed25519 verifications of envelopes: one by one through
    `cryptography` on one core (keys parsed once), and by pages of 500 through
    `verify_envelopes` with a thread per core."""
    envelopes = [Envelope.from_dict(e) for e in signed(account, room, min(count, 20000))]
    public = account.key.public_key_b64
    key = load_public_key(public)
    started = time.perf_counter()
    for env in envelopes:
        try:
            key.verify(b64decode(env.sig), env.signed_bytes())
        except InvalidSignature as exc:
            raise AssertionError(env.id) from exc
    one_core = (time.perf_counter() - started) * count / len(envelopes)
    pairs = [(env, public) for env in envelopes]
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        started = time.perf_counter()
        for i in range(0, len(pairs), 500):
            assert verify_envelopes(pairs[i:i + 500], pool).count(None) == len(pairs[i:i + 500])
        batched = (time.perf_counter() - started) * count / len(envelopes)
    return one_core, batched


@dataclass
class Result:
    messages: int
    seed_s: float
    from_server_s: float
    from_peers_s: float
    read_floor_s: float
    verify_floor_s: float
    batch_floor_s: float
    profiles: dict[str, list[str]] = field(default_factory=dict)
    # Per catch-up, the CPU seconds each process used during it (user + system).
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)


def run(messages: int, uploaders: int, work: Path, profile: Path | None = None) -> Result:
    room = "catchup-" + secrets.token_hex(3)
    per_account = messages // uploaders
    total = per_account * uploaders
    server = ServerProcess(work / "server", env=SERVER_ENV)
    server.start()
    agents: list[AgentProcess] = []
    try:
        accounts = [register_account(server.url, "seeder") for _ in range(uploaders)]
        began = time.monotonic()
        publish(server, accounts, room, 1, per_account)
        seed_s = time.monotonic() - began
        read_s, rows = read_floor(server, room)
        assert rows == total, rows
        verify_s, batch_s = verify_floors(accounts[0], room, total)
        profiles: dict[str, list[str]] = {}
        cpu_used: dict[str, dict[str, float]] = {}

        def timed(agent: AgentProcess, count: int, name: str,
                  sender: AgentProcess | None = None) -> float:
            # Profiled by label, their CPU counted by who they are (the server too, if up).
            watched = {name: ("the agent catching up", agent)}
            if sender is not None:
                watched[f"{name}, the agent sending"] = ("the agent sending", sender)
            samplers = {} if profile is None else {
                label: Sampler(a.pid, profile / f"{label}.txt")
                for label, (_, a) in watched.items()}
            users = {who: a.pid for who, a in watched.values()}
            if server.running:
                users["the server"] = server.pid
            before = {who: _cpu_seconds(pid) for who, pid in users.items()}
            try:
                seconds = time_to_hold(agent, room, count, timeout=600)
            finally:
                for sampler in samplers.values():
                    sampler.stop()
            cpu_used[name] = {who: _cpu_seconds(pid) - before[who]
                              for who, pid in users.items()}
            for label, sampler in samplers.items():
                profiles[label] = summary_table(read_collapsed(sampler.out), total,
                                                cpu_used[name][watched[label][0]], rows=10)
            return seconds

        def agent(name: str) -> AgentProcess:
            made = AgentProcess(server.url, f"{name}-{secrets.token_hex(3)}", room,
                                work / name, PASSWORD, name=name, keep_ports=True,
                                reconnect_max=LOOPBACK_RECONNECT_MAX,
                                ready_timeout=120.0)
            agents.append(made)
            return made

        first = agent("first")
        first.start()
        from_server = timed(first, total, "from the server")
        print(f"-- from the server: {total:,} messages in {from_server:.2f} s", flush=True)

        second = agent("second")
        second.start()
        time_to_hold(second, room, total, timeout=600)
        second.stop()
        publish(server, accounts, room, per_account + 1, per_account)
        time_to_hold(first, room, 2 * total, timeout=600)
        server.kill()
        second.start()
        from_peers = timed(second, 2 * total, "from the peers", sender=first)
        print(f"-- from the peers: {total:,} missed in {from_peers:.2f} s", flush=True)
        return Result(total, seed_s, from_server, from_peers, read_s, verify_s, batch_s,
                      profiles, cpu_used)
    finally:
        stop_all([*agents, server])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(r: Result, uploaders: int) -> str:
    def row(name: str, seconds: float, goal: float) -> str:
        return (f"| {name} | {seconds:.2f} | {r.messages / seconds:,.0f} | "
                f"{seconds / r.read_floor_s:.0f} | {seconds / r.verify_floor_s:.1f} | "
                f"{seconds / r.batch_floor_s:.1f} | ≤ {goal:.0f} s: "
                f"{'met' if seconds <= goal else 'not met'} |")

    lines = [
        "## Catch-up: a long room from the server and from the peers (issue 16)",
        "",
        f"`python -m bench.catchup --messages {r.messages} --uploaders {uploaders}`: a room of "
        f"{r.messages:,} signed messages published to the server (seeding took "
        f"{r.seed_s:.1f} s). From the server: a new device's agent, from its UI answering to "
        "its SQLite log holding every message (read by another process). From the peers: a "
        f"device that missed {r.messages:,} messages while stopped, restarted with the server "
        "killed, until its log holds them all (brought over the data channel by the other "
        "agent). Floors in the same run: the rows read straight from the server's SQLite file, "
        "and the Ed25519 verifications alone (every envelope is verified): one by one on one "
        "core through `cryptography` as before, and by pages of 500 through `verify_envelopes` "
        "(libsodium, a thread per core) as now. "
        f"Machine: {machine('aiortc', 'cryptography', 'pynacl')}; 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work shares the machine: compare the "
        "ratios to the floors).",
        "",
        "| catch-up | seconds | msgs/s | ÷ rows read | ÷ verify, one core | ÷ verify, batched "
        "| goal |",
        "|---|---|---|---|---|---|---|",
        row("new device, from the server", r.from_server_s, GOAL_SERVER_S),
        row("restarted device, from the peers (server down)", r.from_peers_s, GOAL_PEERS_S),
        "",
        f"Rows read straight from SQLite: {r.read_floor_s:.2f} s "
        f"({r.messages / r.read_floor_s:,.0f} rows/s). Ed25519 verification alone, one by one "
        f"on one core: {r.verify_floor_s:.2f} s for {r.messages:,} "
        f"({r.verify_floor_s / r.messages * 1e6:.0f} µs each); by pages with a thread per core: "
        f"{r.batch_floor_s:.2f} s ({r.batch_floor_s / r.messages * 1e6:.0f} µs each).",
    ]
    cores = len(os.sched_getaffinity(0))
    for name, used in r.cpu.items():
        total = sum(used.values())
        parts = ", ".join(f"{who} {cpu:.2f} s" for who, cpu in used.items())
        lines += ["", f"CPU used while catching up {name}: {parts}; {total:.2f} s in all, "
                  f"{total / r.messages * 1e6:.0f} µs per message: on {cores} cores no less "
                  f"than {total / cores:.2f} s of wall time even with nothing waiting."]
    for name, table in r.profiles.items():
        lines += ["", f"Profile of the agent catching up {name} (py-spy, idle left out; "
                  "µs per message caught up):", "", *table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="sample each catching-up agent with py-spy into DIR")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="catchup-") as tmp:
        result = run(args.messages, args.uploaders, Path(tmp), args.profile)
    text = report(result, args.uploaders)
    print(text)
    if not args.no_write:
        print(f"written to {write_section('catchup', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
