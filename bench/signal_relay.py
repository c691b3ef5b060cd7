"""The server's relay of offers, answers and candidates (issue 17): a signal's round trip
between two Socket.IO clients through the server, beside a bare Flask-SocketIO relay (one
emit to a sid, bench/bare_relay.py) measured in the same run.

    .venv/bin/python -m bench.signal_relay [--signals 500] [--no-postgres] [--no-write]

Two clients (python-socketio AsyncClients, WebSocket only, in this process) join a room with a
device each; A sends B a signal, B sends it back to A as soon as it arrives, A times the whole
round trip (two relays, one after the other) and B the one way. Signals carry an offer-sized
payload. Layouts: the development server (`python -m signaling`, SQLite, what the browser
benchmark runs), a public and a private room; the Procfile's gunicorn on PostgreSQL with the
Redis message queue and rate-limit counters (unless `--no-postgres`). Beside the wall times,
the server's CPU time per relayed signal, which moves far less with the machine's load."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import socketio

from bench.databases import FreshDeployments, cpu_seconds
from bench.report import machine, percentile, write_section
from launcher import ServerProcess
from launcher.child import Child
from launcher.server import OPEN_LIMITS
from protocol import DeviceKey
from tests.signaling.services import REDIS_TEST_URL, require_redis

PASSWORD = "password-" + "s" * 8
LIMITS = {**OPEN_LIMITS, "RATELIMIT_SIGNAL": "1000000 per 10 seconds"}
WARM_UP = 20
# An offer's size: the browser's SDP with one data channel, its fingerprint signed inside.
PAYLOAD = {"type": "offer", "sdp": "v=0\r\n" + "a=x-filler:" + "0123456789abcdef" * 90 + "\r\n"}
PACKAGES = ("Flask-SocketIO", "python-socketio", "python-engineio", "simple-websocket",
            "SQLAlchemy")


@dataclass
class Layout:
    """One layout's figures: round trips and one-way times (ms), server CPU per signal."""

    name: str
    round_trips: list[float]
    one_way: list[float]
    cpu_ms: float


class BareRelay(Child):
    """`python -m bench.bare_relay` on a free port."""

    markers = ("listening on",)

    def __init__(self, workdir: Path) -> None:
        self.url = ""
        super().__init__(workdir / "bare-relay.log", {**os.environ, "PYTHONUNBUFFERED": "1"})

    def args(self) -> list[str]:
        return ["-m", "bench.bare_relay", "--port", "0"]

    def started(self, words: list[str]) -> None:
        self.url = words[0]


@dataclass
class Pair:
    """What the two clients need: the URL, their tokens and device ids, and the rooms."""

    url: str
    tokens: tuple[str, str]
    devices: tuple[str, str]
    rooms: dict[str, str]  # "public"/"private" -> room name


def accounts(url: str) -> Pair:
    """Two users with a device each, a public room name and a private room of the two."""
    tokens, devices = [], []
    names = [f"{who}-{secrets.token_hex(3)}" for who in ("alice", "bob")]
    with requests.Session() as http:
        for name in names:
            reply = http.post(f"{url}/api/register", timeout=30,
                              json={"username": name, "password": PASSWORD})
            reply.raise_for_status()
            tokens.append(reply.json()["token"])
            key = DeviceKey.generate()
            http.post(f"{url}/api/devices", json={"public_key": key.public_key_b64},
                      headers={"Authorization": f"Bearer {tokens[-1]}"},
                      timeout=30).raise_for_status()
            devices.append(key.device_id)
        private = f"private-{secrets.token_hex(3)}"
        http.post(f"{url}/api/rooms", headers={"Authorization": f"Bearer {tokens[0]}"},
                  json={"name": private, "private": True,
                        "members": [names[1]]}, timeout=30).raise_for_status()
    return Pair(url, (tokens[0], tokens[1]), (devices[0], devices[1]),
                {"public": f"public-{secrets.token_hex(3)}", "private": private})


async def relay(url: str, auths: tuple[Any, Any], devices: tuple[str, str], room: str,
                count: int) -> tuple[list[float], list[float]]:
    """`count` signals A -> B -> A, one at a time, after WARM_UP more: round trips and
    one-way times in ms."""
    a, b = socketio.AsyncClient(reconnection=False), socketio.AsyncClient(reconnection=False)
    loop = asyncio.get_running_loop()
    back: asyncio.Future[float] = loop.create_future()
    arrived: list[float] = []

    @b.on("signal")  # type: ignore[untyped-decorator]
    async def bounce(data: dict[str, Any]) -> None:
        arrived.append(time.perf_counter())
        await b.emit("signal", {"room": room, "to": devices[0], "kind": data["kind"],
                                "payload": data["payload"]})

    @a.on("signal")  # type: ignore[untyped-decorator]
    def returned(data: dict[str, Any]) -> None:
        if not back.done():
            back.set_result(time.perf_counter())

    refusals: list[Any] = []

    def acked(reply: Any) -> None:
        if not (isinstance(reply, dict) and reply.get("ok")):
            refusals.append(reply)

    for client, auth in zip((a, b), auths, strict=True):
        await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=30)
    try:
        for client, device in zip((a, b), devices, strict=True):
            joined = await client.call("join", {"room": room, "device": device}, timeout=30)
            assert joined["ok"], joined
        round_trips, one_way = [], []
        for i in range(WARM_UP + count):
            back = loop.create_future()
            began = time.perf_counter()
            await a.emit("signal", {"room": room, "to": devices[1], "kind": "offer",
                                    "payload": PAYLOAD}, callback=acked)
            try:
                ended = await asyncio.wait_for(back, timeout=10)
            except TimeoutError:
                raise AssertionError(f"signal {i} never came back; refusals: {refusals}") \
                    from None
            if i >= WARM_UP:
                round_trips.append((ended - began) * 1000)
                one_way.append((arrived[-1] - began) * 1000)
        return round_trips, one_way
    finally:
        for client in (a, b):
            await client.disconnect()


def measured(name: str, url: str, pids: list[int], auths: tuple[Any, Any],
             devices: tuple[str, str], room: str, count: int) -> Layout:
    before = cpu_seconds(pids)
    round_trips, one_way = asyncio.run(relay(url, auths, devices, room, count))
    cpu_ms = (cpu_seconds(pids) - before) * 1000 / (2 * (WARM_UP + count))
    print(f"-- {name}: round trip p50 {statistics.median(round_trips):.2f} ms, "
          f"{cpu_ms:.2f} ms CPU per signal", flush=True)
    return Layout(name, round_trips, one_way, cpu_ms)


def gibberish(name: str, url: str, pids: list[int], count: int) -> list[Layout]:
    pair = accounts(url)
    auths = ({"token": pair.tokens[0]}, {"token": pair.tokens[1]})
    return [measured(f"{name}, {kind} room", url, pids, auths, pair.devices, room, count)
            for kind, room in pair.rooms.items()]


@contextmanager
def started(child: Child) -> Iterator[Child]:
    child.start()
    try:
        yield child
    finally:
        child.stop()


def run(args: argparse.Namespace, work: Path) -> list[Layout]:
    layouts: list[Layout] = []
    devices = ("a" * 32, "b" * 32)
    with started(BareRelay(work)) as bare:
        assert isinstance(bare, BareRelay)
        layouts.append(measured("bare Flask-SocketIO relay (emit to the sid), Werkzeug",
                                bare.url, [bare.pid], (None, None), devices, "bare",
                                args.signals))
    with started(ServerProcess(work / "dev", env=LIMITS)) as dev:
        assert isinstance(dev, ServerProcess)
        layouts += gibberish("python -m signaling, SQLite", dev.url, [dev.pid], args.signals)
    if args.postgres:
        require_redis()
        with FreshDeployments(work)("postgresql", 1, REDIS_TEST_URL, LIMITS) as deployment:
            process = deployment.processes[0]
            layouts += gibberish("gunicorn (Procfile), PostgreSQL, Redis queue", process.url,
                                 process.worker_pids(), args.signals)
    return layouts


def report(layouts: list[Layout], args: argparse.Namespace, command: str) -> str:
    floor = layouts[0]
    f50 = statistics.median(floor.round_trips)
    rows = ["| relay | round trip p50 / p99 ms | one way p50 / p99 ms | ÷ bare (p50) | "
            "server CPU ms per signal |", "|---|---|---|---|---|"]
    for layout in layouts:
        r50 = statistics.median(layout.round_trips)
        rows.append(
            f"| {layout.name} | {r50:.2f} / {percentile(layout.round_trips, 99):.2f} | "
            f"{statistics.median(layout.one_way):.2f} / {percentile(layout.one_way, 99):.2f}"
            f" | {r50 / f50:.1f} | {layout.cpu_ms:.2f} |")
    return "\n".join([
        "## The server's signal relay (issue 17)",
        "",
        f"`{command}`: two python-socketio clients (WebSocket) in one process on loopback; A "
        "sends B an offer-sized signal, B sends it back on arrival, {0} round trips one after "
        "the other after {1} of warm-up; the bare relay is a Flask-SocketIO app that emits "
        "to the target's sid and nothing else (`bench/bare_relay.py`), run the same way as "
        "the development server. Server CPU: user + system of the server process(es), per "
        "relayed signal. Machine: {2}; 1-minute load average {3:.1f} at the end (shared and "
        "noisy).".format(args.signals, WARM_UP, machine(*PACKAGES), os.getloadavg()[0]),
        "",
        *rows,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signal_relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=500, help="round trips per layout")
    parser.add_argument("--no-postgres", dest="postgres", action="store_false",
                        help="skip the gunicorn + PostgreSQL + Redis layout")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gibberish-bench-relay-") as path:
        layouts = run(args, Path(path))
    command = f"python -m bench.signal_relay --signals {args.signals}" + (
        "" if args.postgres else " --no-postgres")
    text = report(layouts, args, command)
    print(text)
    if not args.no_write:
        print(f"written to {write_section('signal-relay', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
