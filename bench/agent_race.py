"""The agents' side of the mesh race (issue 17): N agents, already running and signed in, join
one new room at the same instant; how long until every pair is linked, and how often a pair
never links (a stall). Beside it, in the same run, the floor: N bare aiortc peers in one
process linking every pair at once with the signals handed over in memory.

    .venv/bin/python -m bench.agent_race [--agents 4] [--tries 50] [--floor 10] [--no-write]

Each try: every agent is asked to join the room at once (`POST /api/rooms`, one thread each);
the full mesh is reached when each agent's state of the room shows a connected data channel to
every other agent. Then every agent leaves the room, and the next try waits until no agent
holds a link any more (the agents share no other room), so every try races fresh links: the
join replies, `peer_joined` and the offers/answers arrive in whatever order the machine makes.
A try with no full mesh within `STALL_S` is a stall; the test suite runs a few tries
(tests/peer_agent/test_join_race.py), the benchmark fifty."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from bench.report import machine, percentile, write_section
from launcher import AgentProcess, ServerProcess, start_all, stop_all
from launcher.agent import LOOPBACK_RECONNECT_MAX
from launcher.server import OPEN_LIMITS
from peer_agent.ice import pin_ice_hosts

STALL_S = 10.0  # no full mesh by then: a stall (the agents' link time-out is 10 s)
UNLINK_S = 15.0  # links closed after everyone left
PASSWORD = "password-" + "r" * 8
SERVER_ENV = {**OPEN_LIMITS, "RATELIMIT_SIGNAL": "1000000 per 10 seconds"}
GOAL_MEDIAN_MS = 250.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class Try:
    """One try: ms from the first join request to the last join reply and to the full mesh
    (None: a stall), and what each agent showed if it stalled."""

    joined_ms: float
    mesh_ms: float | None
    shown: dict[str, dict[str, str]]

    @property
    def after_joins_ms(self) -> float | None:
        return None if self.mesh_ms is None else self.mesh_ms - self.joined_ms


def link_states(agent: AgentProcess, room: str) -> dict[str, str]:
    """Device -> link state, as the agent's state of `room` shows its peers."""
    return {str(p["device"]): str(p["state"]) for p in agent.state(room)["peers"]}


def _timed_join(agent: AgentProcess, room: str) -> float:
    """Join `room`; the monotonic time of the reply."""
    agent.join(room)
    return time.monotonic()


def full_mesh(agents: Sequence[AgentProcess], room: str, pool: ThreadPoolExecutor) -> bool:
    states = list(pool.map(link_states, agents, repeat(room)))
    return all(states[i].get(b.device) == "connected"
               for i, a in enumerate(agents) for b in agents if b is not a)


def no_links(agents: Sequence[AgentProcess], pool: ThreadPoolExecutor) -> bool:
    return not any(pool.map(lambda a: a.device_links(), agents))


def race(agents: Sequence[AgentProcess], tries: int, stall_s: float = STALL_S) -> list[Try]:
    """Run `tries` tries of every agent joining a new room at once; see the module's text."""
    results: list[Try] = []
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        for _ in range(tries):
            room = unique("race")
            started = time.monotonic()
            replies = list(pool.map(_timed_join, agents, repeat(room)))
            joined_ms = (max(replies) - started) * 1000
            mesh_ms: float | None = None
            while time.monotonic() - started < stall_s:
                if full_mesh(agents, room, pool):
                    mesh_ms = (time.monotonic() - started) * 1000
                    break
                time.sleep(0.01)
            shown = {} if mesh_ms is not None else {
                a.name: link_states(a, room) for a in agents}
            results.append(Try(joined_ms, mesh_ms, shown))
            list(pool.map(AgentProcess.leave, agents, repeat(room)))
            deadline = time.monotonic() + UNLINK_S
            while not no_links(agents, pool):
                if time.monotonic() > deadline:
                    raise RuntimeError("links still open after every agent left the room")
                time.sleep(0.02)
    return results


def start_agents(server: ServerProcess, base: Path, count: int) -> list[AgentProcess]:
    """`count` agents, each signed in and in a room of its own (they share none)."""
    agents = [AgentProcess(server.url, unique(f"racer{i}"), unique("warm"), base / f"racer{i}",
                           PASSWORD, name=f"racer{i}", reconnect_max=LOOPBACK_RECONNECT_MAX)
              for i in range(count)]
    start_all(agents)
    return agents


async def _bare_mesh(count: int) -> float:
    """Seconds for `count` bare aiortc peers to link every pair at once (signals in memory)."""
    pcs: list[RTCPeerConnection] = []

    async def link() -> None:
        offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.extend((offerer, answerer))
        opened, arrived = asyncio.Event(), asyncio.Event()
        channel = offerer.createDataChannel("chat")
        channel.on("open", opened.set)

        @answerer.on("datachannel")
        def on_channel(remote: RTCDataChannel) -> None:
            arrived.set()

        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        await opened.wait()
        await arrived.wait()

    started = time.perf_counter()
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(link() for i in range(count) for _ in range(i + 1, count)))
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(pc.close() for pc in pcs))


def measure_floor(count: int, tries: int) -> list[float]:
    """ms for bare aiortc full meshes of `count` peers, ICE pinned to 127.0.0.1."""
    pin_ice_hosts(["127.0.0.1"])
    try:
        return [asyncio.run(_bare_mesh(count)) * 1000 for _ in range(tries)]
    finally:
        pin_ice_hosts(None)


def report(count: int, results: list[Try], floor: list[float]) -> str:
    meshes = [t.mesh_ms for t in results if t.mesh_ms is not None]
    after = [t.after_joins_ms for t in results if t.after_joins_ms is not None]
    joins = [t.joined_ms for t in results]
    stalls = len(results) - len(meshes)
    floor_med = statistics.median(floor)

    def stats(samples: list[float]) -> str:
        if not samples:
            return "– | – | –"
        return (f"{statistics.median(samples):.0f} | {percentile(samples, 95):.0f} | "
                f"{max(samples):.0f}")

    met = "met" if after and statistics.median(after) <= GOAL_MEDIAN_MS and not stalls else (
        "not met")
    return "\n".join([
        "## The agents' mesh race: joining one room at once (issue 17)",
        "",
        f"`python -m bench.agent_race --agents {count} --tries {len(results)} --floor "
        f"{len(floor)}`: {count} agents on loopback (ICE pinned to 127.0.0.1), already signed "
        "in and sharing no room, are asked to join one new room at the same instant "
        "(`POST /api/rooms`, a thread each); the mesh is full when every agent's state of the "
        "room shows a connected data channel to every other. Between tries every agent "
        "leaves and the next try waits until no agent holds a link, so each try races fresh "
        "links. A try without a full mesh within "
        f"{STALL_S:.0f} s is a stall. Floor, in the same run: {count} bare aiortc peers in "
        "one process linking every pair at once, signals handed over in memory. "
        f"Machine: {machine('aiortc', 'aioice')}; 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        "| figure | median ms | p95 ms | max ms |",
        "|---|---|---|---|",
        f"| last join reply, from the first join request | {stats(joins)} |",
        f"| full mesh, from the first join request | {stats(meshes)} |",
        f"| full mesh, after the last join reply | {stats(after)} |",
        f"| floor: bare aiortc full mesh ({len(floor)} runs) | {stats(floor)} |",
        "",
        f"Stalls: **{stalls} in {len(results)} tries** (goal 0 in 50). Full mesh after the "
        f"joins, median against the floor: "
        + (f"{statistics.median(after):.0f} against {floor_med:.0f} ms "
           f"({statistics.median(after) / floor_med:.1f}×)" if after else "–")
        + f"; goal median ≤ {GOAL_MEDIAN_MS:.0f} ms and no stall: {met}.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--floor", type=int, default=10, help="bare aiortc meshes")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-race-") as tmp:
        base = Path(tmp)
        server = ServerProcess(base / "server", env=SERVER_ENV)
        server.start()
        agents: list[AgentProcess] = []
        try:
            agents = start_agents(server, base, args.agents)
            results = race(agents, args.tries)
        finally:
            stop_all([*agents, server])
    floor = measure_floor(args.agents, args.floor)
    text = report(args.agents, results, floor)
    print(text)
    for n, t in enumerate(results):
        if t.mesh_ms is None:
            print(f"stall in try {n}: {t.shown}")
    if not args.no_write:
        print(f"written to {write_section('agent-race', text)}")


if __name__ == "__main__":
    main()
