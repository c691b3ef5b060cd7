"""Connections: 1,000 idle authenticated Socket.IO clients joined to rooms, first on one server
process, then spread over two processes sharing Redis: the server's memory per connection,
its CPU while they idle, and the time a join takes to reach every member of its room.

    .venv/bin/python -m bench.connections [--clients 1000] [--room-size 100] [--joins 30]
                                          [--no-write]

Every process is started from the Procfile (gunicorn, one worker, threads) on PostgreSQL; the
clients are python-socketio AsyncClients (WebSocket only) in this process, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis
import requests
import socketio

from bench.databases import (
    Deployer,
    FreshDeployments,
    cpu_seconds,
    database,
    database_version,
    rss_bytes,
    thread_count,
    workspace,
)
from bench.report import machine, percentile, write_section
from protocol import DeviceKey
from tests.signaling.conftest import PASSWORD
from tests.signaling.deployment import Deployment
from tests.signaling.services import REDIS_TEST_URL, require_redis

CHUNK = 50  # clients connected or joined at once
PACKAGES = ("Flask-SocketIO", "python-socketio", "python-engineio", "simple-websocket",
            "gunicorn", "redis")


@dataclass
class Member:
    """One client: its device, its room, the process it talks to, and what it heard."""

    token: str
    key: DeviceKey
    room: str
    url: str
    client: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(
        reconnection=False))
    joined: dict[str, float] = field(default_factory=dict)  # device -> when its join arrived
    left: set[str] = field(default_factory=set)


@dataclass
class Outcome:
    name: str
    processes: int
    clients: int
    rss_before: int
    rss_after: int
    threads_after: int
    idle_cpu: float
    fanout_ms: list[float]
    ack_ms: list[float]

    @property
    def per_connection_kib(self) -> float:
        return (self.rss_after - self.rss_before) / self.clients / 1024


def register_users(url: str, rooms: list[str], devices_per_room: int,
                   ) -> dict[str, tuple[str, list[DeviceKey]]]:
    """One user per room, with `devices_per_room` registered device keys each."""
    users: dict[str, tuple[str, list[DeviceKey]]] = {}
    with requests.Session() as http:
        for room in rooms:
            name = f"bench-{secrets.token_hex(4)}"
            reply = http.post(f"{url}/api/register",
                              json={"username": name, "password": PASSWORD}, timeout=30)
            reply.raise_for_status()
            token = reply.json()["token"]
            keys = [DeviceKey.generate() for _ in range(devices_per_room)]
            for key in keys:
                http.post(f"{url}/api/devices", json={"public_key": key.public_key_b64},
                          headers={"Authorization": f"Bearer {token}"},
                          timeout=30).raise_for_status()
            users[room] = (token, keys)
    return users


async def connect(member: Member) -> None:
    @member.client.on("peer_joined")  # type: ignore[untyped-decorator]
    def on_joined(data: dict[str, Any]) -> None:
        member.joined.setdefault(data["peer"]["device"], time.perf_counter())

    @member.client.on("peer_left")  # type: ignore[untyped-decorator]
    def on_left(data: dict[str, Any]) -> None:
        member.left.add(data["device"])

    await member.client.connect(member.url, auth={"token": member.token},
                                transports=["websocket"], wait_timeout=60)


async def join(member: Member) -> float:
    began = time.perf_counter()
    reply = await member.client.call("join", {"room": member.room,
                                              "device": member.key.device_id}, timeout=60)
    assert reply["ok"], reply
    return (time.perf_counter() - began) * 1000


async def in_chunks(members: list[Member], action: Any) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(members), CHUNK):
        results += await asyncio.gather(*(action(m) for m in members[start:start + CHUNK]))
    return results


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


async def exercise(deployment: Deployment, name: str, clients: int, room_size: int,
                   joins: int, idle_seconds: float) -> Outcome:
    urls = deployment.urls
    rooms = [f"bench-{secrets.token_hex(3)}" for _ in range(max(1, clients // room_size))]
    joiners_per_room = -(-joins // len(rooms))
    # Per room: the members, the devices that join later, and one spare to warm up with.
    users = await asyncio.to_thread(register_users, urls[0], rooms,
                                    room_size + joiners_per_room + 1)
    members: list[Member] = []
    later: list[list[Member]] = []
    spares: list[Member] = []
    for r, room in enumerate(rooms):
        token, keys = users[room]
        made = [Member(token, key, room, urls[(r * len(keys) + i) % len(urls)])
                for i, key in enumerate(keys)]
        members += made[:room_size]
        later.append(made[room_size:-1])
        spares.append(made[-1])
    # Joins go round the rooms: the first of each room's joiners, then the second, …
    joiners = [room_joiners[i] for i in range(joiners_per_room) for room_joiners in later]
    workers = [pid for p in deployment.processes for pid in p.worker_pids()]

    # Warm the workers up (first connection, first join) before the memory baseline.
    warm = spares[0]
    await connect(warm)
    await join(warm)
    await warm.client.disconnect()
    await asyncio.sleep(1)
    rss_before = sum(rss_bytes(pid) for pid in workers)

    await in_chunks(members, connect)
    await in_chunks(members, join)
    await asyncio.sleep(idle_seconds / 2)
    rss_after = sum(rss_bytes(pid) for pid in workers)
    threads = sum(thread_count(pid) for pid in workers)
    cpu_before = cpu_seconds(workers)
    await asyncio.sleep(idle_seconds)
    idle_cpu = (cpu_seconds(workers) - cpu_before) / idle_seconds

    by_room: dict[str, list[Member]] = defaultdict(list)
    for member in members:
        by_room[member.room].append(member)
    fanout: list[float] = []
    acks: list[float] = []
    for joiner in joiners[:joins]:
        audience = by_room[joiner.room]
        device = joiner.key.device_id
        await connect(joiner)
        began = time.perf_counter()
        acks.append(await join(joiner))
        await until(lambda: all(device in m.joined for m in audience), 60,  # noqa: B023
                    f"the join of {device} to reach {len(audience)} members")
        fanout.append((max(m.joined[device] for m in audience) - began) * 1000)
        await joiner.client.disconnect()
        await until(lambda: all(device in m.left for m in audience), 60,  # noqa: B023
                    "the leave to reach every member")
    await in_chunks(members, lambda m: m.client.disconnect())
    return Outcome(name, len(urls), clients, rss_before, rss_after, threads, idle_cpu,
                   fanout, acks)


def service_versions() -> str:
    """The PostgreSQL and Redis versions the layouts run on."""
    with workspace("versions") as workdir, database("postgresql", workdir) as url:
        postgres = database_version(url)
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=5)
    try:
        return f"{postgres}, Redis {client.info('server')['redis_version']}"
    finally:
        client.close()


def server_env(clients: int) -> dict[str, str]:
    """What each server process runs with for `clients` clients."""
    return {"RATELIMIT_JOIN": "1000000 per minute", "RATELIMIT_JOIN_ROOM": "1000000 per minute",
            "RATELIMIT_JOIN_ROOMS": "1000000 per minute",
            "RATELIMIT_REGISTER": "100000 per minute",
            # Each WebSocket holds one of gunicorn's threads: room for every client and HTTP.
            "WEB_THREADS": str(clients + 200), "WEB_CONNECTIONS": str(clients + 400)}


def run(args: argparse.Namespace, deployer: Deployer) -> list[Outcome]:
    env = server_env(args.clients)
    layouts = [("one process", 1, None), ("one process, Redis queue", 1, REDIS_TEST_URL),
               ("two processes, Redis queue", 2, REDIS_TEST_URL)]
    outcomes = []
    for name, count, redis_url in layouts:
        if redis_url is not None:
            require_redis()
        with deployer("postgresql", count, redis_url, env) as deployment:
            try:
                outcomes.append(asyncio.run(exercise(deployment, name, args.clients,
                                                     args.room_size, args.joins,
                                                     args.idle_seconds)))
            except Exception:
                print(f"{name} failed; the server said:\n{deployment.logs()[-6000:]}")
                raise
    return outcomes


def report(outcomes: list[Outcome], args: argparse.Namespace, services: str,
           load: float) -> str:
    def ms(samples: list[float], q: float) -> str:
        return f"{percentile(samples, q):.1f}"

    rows = ["| layout | server memory per connection | server threads | idle CPU | "
            "join → every member p50 / p99 ms | join ack p50 ms |",
            "|---|---|---|---|---|---|"]
    for o in outcomes:
        rows.append(
            f"| {o.name} | {o.per_connection_kib:.0f} KiB ({o.rss_before / 2**20:.0f} → "
            f"{o.rss_after / 2**20:.0f} MiB) | {o.threads_after:,} | {o.idle_cpu:.0%} of a core "
            f"| {ms(o.fanout_ms, 50)} / {ms(o.fanout_ms, 99)} | {ms(o.ack_ms, 50)} |")
    base = outcomes[0]

    def ratio(o: Outcome) -> str:
        fanout = statistics.median(o.fanout_ms) / statistics.median(base.fanout_ms)
        memory = o.per_connection_kib / base.per_connection_kib
        return f"{o.name}: fan-out p50 ×{fanout:.2f}, memory per connection ×{memory:.2f}"

    ratios = "; ".join(ratio(o) for o in outcomes[1:])
    return "\n".join([
        "## Connections: idle clients, memory, and how fast a join reaches a room",
        "",
        f"`python -m bench.connections --clients {args.clients} --room-size {args.room_size} "
        f"--joins {args.joins}`: {args.clients:,} authenticated Socket.IO clients (WebSocket "
        f"only) joined to rooms of {args.room_size}, idle; then {args.joins} new devices join "
        "one at a time, each timed from its `join` until the last member of its room has its "
        "`peer_joined`. Memory is the server worker's resident size (summed over processes) "
        "after the clients joined, minus before; idle CPU is measured over "
        f"{args.idle_seconds:.0f} s. Each layout runs from the Procfile on {services}, "
        f"`WEB_THREADS={args.clients + 200}`. Machine: "
        f"{machine(*PACKAGES)}; 1-minute load average {load:.1f} at the start (other work "
        "on the machine).",
        "",
        *rows,
        "",
        f"Against one process without Redis — {ratios}. In threading mode each connection "
        f"holds about {base.threads_after / base.clients:.0f} server threads (gunicorn's "
        "request thread, which the WebSocket keeps, and the WebSocket's and Engine.IO's own), "
        "which is where its memory goes; `WEB_THREADS` must exceed the clients a process "
        "holds. Through Redis a join's notice takes one more hop (publish, then each "
        "process's listener), whichever process holds the members.",
    ])


def main(argv: list[str] | None = None, deployer: Deployer | None = None) -> int:
    """The command line; `deployer` says where the server processes come from (by default a
    fresh database and deployment for each layout)."""
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--room-size", type=int, default=100)
    parser.add_argument("--joins", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]  # other work on the machine skews the figures: say how much
    require_redis()
    with workspace("connections") as workdir:
        outcomes = run(args, deployer or FreshDeployments(workdir))
    text = report(outcomes, args, service_versions(), load)
    print(text)
    if not args.no_write:
        print(f"written to {write_section('connections', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
